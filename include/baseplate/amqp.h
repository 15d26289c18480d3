/* AMQP 0-9-1 connections (RabbitMQ) over rabbitmq-c, on the loop
 * (docs/amqp.md, docs/consumers.md). The Lua modules baseplate.clients.amqp
 * (the producer) and baseplate.frameworks.queue_consumer.amqp (the consumer)
 * stand on it.
 *
 * A connection speaks on one channel (1). Connecting (TCP, the AMQP
 * handshake, opening the channel) runs on libuv's thread pool; after that
 * the loop owns the connection: its socket is watched with a poll handle and
 * frames are read without blocking, heartbeats are sent and checked by a
 * loop timer, and a connection found dead (EOF, a socket error, no frame for
 * two heartbeat intervals, the broker closing the connection or the
 * channel) is broken: every waiter is woken with a failure and bp_amqp_error
 * says why. Reconnecting is the caller's: close and connect again.
 *
 * Waiting calls return BP_AGAIN and wake `waiter` (bp_wake) once; a failure
 * found at once is returned instead. */
#ifndef BASEPLATE_AMQP_H
#define BASEPLATE_AMQP_H

#include "baseplate/common.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bp_amqp_conn_s bp_amqp_conn_t;
typedef struct bp_amqp_delivery_s bp_amqp_delivery_t;

typedef struct {
  const char *host;
  int port;
  const char *vhost;    /* "/" when NULL */
  const char *user;     /* "guest" when NULL */
  const char *password; /* "guest" when NULL */
  int heartbeat;        /* seconds; 0: none */
  double timeout;       /* the connect and handshake, seconds; 0: no limit */
  /* TLS (amqps), over rabbitmq-c's OpenSSL socket, TLS 1.2 or newer: */
  int tls;                  /* 1: TLS */
  int tls_verify_peer;      /* 1: the broker's certificate must chain to a trusted CA */
  int tls_verify_hostname;  /* 1: ... and name `host` (DNS name or IP address) */
  const char *tls_ca_certs; /* a PEM file of the CAs to trust; NULL: the system's */
  const char *tls_certfile; /* a client certificate (PEM), or NULL */
  const char *tls_keyfile;  /* its private key (PEM); NULL: in tls_certfile */
} bp_amqp_options_t;

/* Connect: BP_AGAIN and `waiter` is woken with BP_OK (the channel is open)
 * or a failure (bp_amqp_error says why; the password never appears; a TLS
 * failure says what OpenSSL found, e.g. "TLS handshake failed: certificate
 * verify failed: self-signed certificate in certificate chain"). *out is
 * the connection either way (close it). BP_EINVAL/BP_ENOMEM at once, with
 * err, and *out NULL. */
BP_EXTERN int bp_amqp_connect(const bp_amqp_options_t *o, int waiter, bp_amqp_conn_t **out,
                              char *err, size_t errlen);

/* The broker's methods that answer: one at a time per connection. Each
 * returns BP_AGAIN and wakes `waiter` with BP_OK when the broker answered,
 * or a failure (a refused declaration closes the channel: the connection is
 * broken and bp_amqp_error has the broker's reply, e.g. "406
 * PRECONDITION_FAILED - …"). BP_EIO at once when the connection is broken,
 * BP_DECLINED when another method is waiting for its answer. */
BP_EXTERN int bp_amqp_exchange_declare(bp_amqp_conn_t *c, const char *name, const char *type,
                                       int durable, int auto_delete, int waiter);
BP_EXTERN int bp_amqp_queue_declare(bp_amqp_conn_t *c, const char *name, int durable,
                                    int exclusive, int auto_delete, int waiter);
BP_EXTERN int bp_amqp_queue_bind(bp_amqp_conn_t *c, const char *queue, const char *exchange,
                                 const char *routing_key, int waiter);
BP_EXTERN int bp_amqp_qos(bp_amqp_conn_t *c, int prefetch_count, int waiter);
/* Consume `queue` (manual acknowledgement): deliveries are queued on the
 * connection for bp_amqp_next. */
BP_EXTERN int bp_amqp_consume(bp_amqp_conn_t *c, const char *queue, int waiter);
/* Publisher confirms: every later publish waits for the broker's ack. */
BP_EXTERN int bp_amqp_confirm_select(bp_amqp_conn_t *c, int waiter);

/* Publish body[0..len) to `exchange` ("" the default one) with
 * `routing_key`; content_type may be NULL; `persistent` sets delivery mode
 * 2; headers are `nheaders` string pairs (keys[i], vals[i]), sent as long
 * strings. Without confirms: BP_OK once written. With confirms: BP_AGAIN and
 * `waiter` is woken with BP_OK when the broker acked it, BP_DECLINED when it
 * nacked it, a failure when the connection broke first. BP_EIO at once when
 * broken. */
BP_EXTERN int bp_amqp_publish(bp_amqp_conn_t *c, const char *exchange, const char *routing_key,
                              const char *body, size_t len, const char *content_type,
                              int persistent, int nheaders, const char *const *keys,
                              const char *const *vals, int waiter);

/* The next delivery: BP_OK with *out (yours: bp_amqp_delivery_free), or
 * BP_AGAIN and `waiter` is woken (BP_OK: call again; a failure: the
 * connection broke) when one comes. BP_EIO when broken and none is left;
 * BP_DECLINED when another waiter waits. */
BP_EXTERN int bp_amqp_next(bp_amqp_conn_t *c, int waiter, bp_amqp_delivery_t **out);

/* Acknowledge, or reject (requeue: back to the queue; else dropped or
 * dead-lettered) a delivery of this connection. A reject is written at
 * once; acks are gathered and written at the end of the loop turn (or by
 * bp_amqp_close), a run of consecutive tags as one basic.ack with
 * `multiple`. BP_OK; BP_EIO when the connection is broken (the broker
 * redelivers what was not acknowledged). */
BP_EXTERN int bp_amqp_ack(bp_amqp_conn_t *c, uint64_t delivery_tag);
BP_EXTERN int bp_amqp_reject(bp_amqp_conn_t *c, uint64_t delivery_tag, int requeue);

/* Why the connection broke (or the last failure); "" when it did not. */
BP_EXTERN const char *bp_amqp_error(const bp_amqp_conn_t *c);
BP_EXTERN int bp_amqp_broken(const bp_amqp_conn_t *c);
/* Deliveries queued and not yet taken. */
BP_EXTERN int bp_amqp_queued(const bp_amqp_conn_t *c);
/* Close: waiters are woken with BP_ECLOSED; queued deliveries are dropped
 * unacknowledged (the broker redelivers them). Safe at any time. */
BP_EXTERN void bp_amqp_close(bp_amqp_conn_t *c);

/* A delivery's parts (borrowed, valid until bp_amqp_delivery_free). */
enum {
  BP_AMQP_EXCHANGE = 0,
  BP_AMQP_ROUTING_KEY = 1,
  BP_AMQP_CONSUMER_TAG = 2,
  BP_AMQP_BODY = 3,
  BP_AMQP_CONTENT_TYPE = 4,
  BP_AMQP_CONTENT_ENCODING = 5,
  BP_AMQP_MESSAGE_ID = 6
};
BP_EXTERN uint64_t bp_amqp_delivery_tag(const bp_amqp_delivery_t *d);
BP_EXTERN int bp_amqp_delivery_redelivered(const bp_amqp_delivery_t *d);
BP_EXTERN const char *bp_amqp_delivery_field(const bp_amqp_delivery_t *d, int which, size_t *len);
/* Headers whose values are strings, numbers or booleans (as text); others
 * are left out. Header i: its key, and the value returned. NULL past the end. */
BP_EXTERN int bp_amqp_delivery_nheaders(const bp_amqp_delivery_t *d);
BP_EXTERN const char *bp_amqp_delivery_header(const bp_amqp_delivery_t *d, int i, const char **key,
                                              size_t *keylen, size_t *len);
BP_EXTERN void bp_amqp_delivery_free(bp_amqp_delivery_t *d);

#endif
