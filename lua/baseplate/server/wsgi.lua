-- `factory = baseplate.server.wsgi` is what Baseplate.py config files say for
-- HTTP services; it is the same server as baseplate.server.http.
return require("baseplate.server.http")
