/*
 * baseplate: the public C API.
 *
 * This is the one header a C extension module includes. It never exposes the
 * Lua C API: C modules talk to the runtime through these functions only, and
 * Lua code reaches the same functions through LuaJIT's FFI.
 *
 * Conventions (see docs/c-api.md):
 *  - every function returning int returns BP_OK (0) or a negative BP_E* code;
 *    bp_strerror() names it;
 *  - strings are (pointer, length) pairs or NUL-terminated where noted; no
 *    function returns memory the caller must free unless it says so;
 *  - every *_free / *_close accepts NULL.
 */
#ifndef BASEPLATE_H
#define BASEPLATE_H

#include "baseplate/common.h"
#include "baseplate/log.h"
#include "baseplate/ini.h"
#include "baseplate/config.h"
#include "baseplate/http.h"
#include "baseplate/module.h"
#include "baseplate/runtime.h"
#include "baseplate/redis.h"
#include "baseplate/memcache.h"
#include "baseplate/crypto.h"
#include "baseplate/file_watcher.h"
#include "baseplate/events.h"
#include "baseplate/mqueue.h"
#include "baseplate/testing.h"
#include "baseplate/postgres.h"
#include "baseplate/thrift.h"
#include "baseplate/thrift_client.h"
#include "baseplate/http_client.h"
#include "baseplate/kafka.h"
#include "baseplate/amqp.h"
#include "baseplate/zookeeper.h"
#include "baseplate/live_data.h"
#include "baseplate/prometheus.h"

#endif
