#!/usr/bin/python3
"""The Python side of the memcache interoperability test
(tests/lua/test-memcache-interop.lua): pymemcache with serializers that
follow Baseplate.py's baseplate.clients.memcache.lib (flags JSON=1,
INTEGER=2, LONG=4, ZLIB=8; zlib above a minimum length).

    memcache_peer.py write HOST:PORT   store the values below under py:*
    memcache_peer.py read HOST:PORT KEY...   print repr() of each value, one a line
"""
import json
import sys
import zlib

from pymemcache.client.base import Client

JSON, INTEGER, LONG, ZLIB = 1, 2, 4, 8
MIN_COMPRESS = 100


def dump(key, value):
    if isinstance(value, (str, bytes)):
        data, flags = value, 0
    elif isinstance(value, int):
        data, flags = "%d" % value, INTEGER
    else:
        data, flags = json.dumps(value), JSON
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MIN_COMPRESS:
        return zlib.compress(data, 1), flags | ZLIB
    return data, flags


def load(key, data, flags):
    if flags & ZLIB:
        data = zlib.decompress(data)
        flags ^= ZLIB
    if flags == 0:
        return data
    if flags in (INTEGER, LONG):
        return int(data)
    if flags == JSON:
        return json.loads(data)
    raise ValueError("unknown flags %d" % flags)


VALUES = {
    "py:str": "hello, world",
    "py:bytes": b"a\x00b\xff",
    "py:int": 42,
    "py:neg": -7,
    "py:big": 2**62,
    "py:bool": True,
    "py:float": 3.5,
    "py:list": [1, "two", None, False],
    "py:dict": {"a": {"b": [1, 2]}, "c": "d"},
    "py:long": {"text": "compress me " * 50},
}


def main():
    mode, endpoint = sys.argv[1], sys.argv[2]
    host, port = endpoint.rsplit(":", 1)
    c = Client((host, int(port)), serializer=dump, deserializer=load)
    if mode == "write":
        for k, v in VALUES.items():
            assert c.set(k, v, noreply=False), k
        # a pickle, as make_pickle_and_compress_fn writes one
        import pickle

        c.set("py:pickle", {"x": 1}, noreply=False)
        c.raw = Client((host, int(port)), serializer=lambda k, v: (pickle.dumps(v, protocol=2), 1))
        c.raw.set("py:pickle", {"x": 1}, noreply=False)
    else:
        for k in sys.argv[3:]:
            print(repr(c.get(k)))


main()
