-- Baseplate.py's name for the AMQP producer: the same module as
-- baseplate.clients.amqp (KombuProducer).
return require("baseplate.clients.amqp")
