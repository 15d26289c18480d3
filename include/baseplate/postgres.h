/*
 * PostgreSQL connections (docs/postgres.md): libpq's asynchronous API on the
 * process's libuv loop. The loop is never blocked: a host name is resolved
 * with uv_getaddrinfo and handed to libpq as `hostaddr`, connecting is
 * PQconnectPoll driven by the socket's readiness, statements are sent with
 * PQsendQueryParams/PQsendQueryPrepared in non-blocking mode, and the
 * connect and statement time limits are loop timers.
 *
 * One connection runs one operation at a time (a connect, then statements);
 * the pooling, spans and waiting are the Lua side's
 * (baseplate.clients.postgres). Operations follow the core's async
 * convention: the function returns BP_AGAIN and the coroutine waiting as
 * `waiter` is woken exactly once, from the loop, with the operation's
 * status; when a function returns anything else, nobody is woken.
 *
 * A connection that lost its server, timed out or failed to connect is
 * broken: it cannot send again, bp_pg_error() says why, and the only thing
 * left to do is bp_pg_close(). An idle connection watches its socket, so a
 * server that goes away breaks it before it is used again.
 *
 * Statements use the text format both ways: parameters are NUL-terminated
 * strings (NULL for SQL NULL) sent apart from the statement text ($1..$n),
 * and values come back as text. An SQL error is not a failed operation: the
 * waiter is woken with BP_OK and the result says what went wrong.
 */
#ifndef BASEPLATE_POSTGRES_H
#define BASEPLATE_POSTGRES_H

#include "common.h"
#include <stddef.h>

typedef struct bp_pg_conn_s bp_pg_conn_t;
typedef struct bp_pg_result_s bp_pg_result_t;

/** The most parameters one statement may have (the protocol's limit). */
#define BP_PG_MAX_PARAMS 65535

/**
 * Start connecting. `conninfo` is a libpq connection string, as a URL
 * ("postgresql://user@db.example:5432/app?sslmode=require") or as
 * "key=value" pairs. When it names one host by name (no hostaddr, not a
 * socket directory), the name is resolved on libuv's thread pool and every
 * address is tried in turn; several hosts must be addresses or socket
 * directories (resolving them would block), else BP_EINVAL.
 *
 * connect_timeout (seconds, 0 = none) covers the resolution and every
 * attempt. statement_timeout (seconds, 0 = none) is set on the server for
 * the whole session ("-c statement_timeout=Nms" appended to the options), so
 * that the server cancels a slow statement (SQLSTATE 57014) and the
 * connection stays usable.
 *
 * On success *out gets the connection at once, owned by the caller (free it
 * with bp_pg_close()), and BP_AGAIN is returned: `waiter` is woken with
 * BP_OK once connected, with BP_EIO when resolving or connecting failed
 * (refused, no such host, authentication failed), or with BP_ETIMEDOUT;
 * after either failure the connection is broken and bp_pg_error() says why.
 *
 * Errors at once (*out NULL, the reason in err, nobody woken): BP_EINVAL (a
 * NULL or unparsable conninfo, several host names, a negative or NaN
 * timeout), BP_ENOMEM.
 */
BP_EXTERN int bp_pg_connect(const char *conninfo, double connect_timeout, double statement_timeout,
                            int waiter, bp_pg_conn_t **out, char *err, size_t errlen);

/** What bp_pg_connect_as connects with. */
typedef struct bp_pg_connect_opts_s {
  const char *conninfo;    /* as bp_pg_connect's */
  const char *user;        /* NULL: the connection string's (or libpq's default) */
  const char *password;    /* NULL: the connection string's (or none) */
  double connect_timeout;  /* as bp_pg_connect's */
  double statement_timeout;
} bp_pg_connect_opts_t;

/**
 * bp_pg_connect with a user name and password given apart from the
 * connection string (a credential secret's), which take the place of the
 * string's. Both are copied; the copy of the password is wiped once libpq
 * has it. It never appears in an error message or a log line. Same results
 * as bp_pg_connect (BP_EINVAL also for a NULL `o`).
 */
BP_EXTERN int bp_pg_connect_as(const bp_pg_connect_opts_t *o, int waiter, bp_pg_conn_t **out,
                               char *err, size_t errlen);

/**
 * Send one statement with nparams parameters (values[i] is $i+1, NULL for
 * SQL NULL; values may be NULL when nparams is 0). Several statements in one
 * string are refused by the server (the extended protocol). The statement
 * and values are copied before this returns.
 *
 * BP_AGAIN: `waiter` is woken with BP_OK once the server answered (take the
 * result with bp_pg_take_result(); an SQL error is a result too), BP_EIO
 * when the connection was lost (it is then broken), or BP_ETIMEDOUT when
 * `timeout` seconds (0 = none) passed first: the connection is then dropped
 * and broken, since what the server did is unknown. The server's own
 * statement_timeout (bp_pg_connect) is the gentle limit; this one is the
 * backstop.
 *
 * At once, nobody woken: BP_EINVAL when the connection is busy or broken,
 * for a NULL statement, nparams outside 0..BP_PG_MAX_PARAMS, NULL values
 * with nparams > 0 or a negative timeout; BP_EIO when sending failed (the
 * connection is then broken). bp_pg_error() says why.
 */
BP_EXTERN int bp_pg_query(bp_pg_conn_t *c, const char *sql, int nparams, const char *const *values,
                          double timeout, int waiter);

/**
 * Prepare statement `sql` under `name` on this connection (the server
 * keeps it for the session; "" is the unnamed statement). Parameter types
 * are inferred by the server. Same waking and errors as bp_pg_query(); the
 * result is an empty command result, or the error (e.g. SQLSTATE 42P05 when
 * the name is taken).
 */
BP_EXTERN int bp_pg_prepare(bp_pg_conn_t *c, const char *name, const char *sql, double timeout,
                            int waiter);

/**
 * Run the statement prepared as `name` with nparams parameters. Same
 * parameters, waking and errors as bp_pg_query(); SQLSTATE 26000 in the
 * result when no statement has that name on this connection.
 */
BP_EXTERN int bp_pg_query_prepared(bp_pg_conn_t *c, const char *name, int nparams,
                                   const char *const *values, double timeout, int waiter);

/**
 * The result of the last statement, handed over to the caller (free it
 * with bp_pg_result_free()); NULL when there is none (nothing finished,
 * already taken, or a failed operation). It stays valid after the
 * connection is closed, and after the loop is gone.
 */
BP_EXTERN bp_pg_result_t *bp_pg_take_result(bp_pg_conn_t *c);

/** Free a result; accepts NULL. */
BP_EXTERN void bp_pg_result_free(bp_pg_result_t *r);

/** 1 when the statement succeeded (rows or a command tag), 0 for an SQL error and NULL. */
BP_EXTERN int bp_pg_result_ok(const bp_pg_result_t *r);

/**
 * The server's primary error message ("relation \"nope\" does not exist");
 * "" when the statement succeeded, and for NULL. Owned by the result.
 */
BP_EXTERN const char *bp_pg_result_error(const bp_pg_result_t *r);

/** The error's five-character SQLSTATE ("42P01"); "" when none or NULL. Owned by the result. */
BP_EXTERN const char *bp_pg_result_sqlstate(const bp_pg_result_t *r);

/**
 * Another field of the error, by libpq's PG_DIAG_* code: 'D' detail, 'H'
 * hint, 'n' constraint name, 't' table name, 'S' severity… NULL when the
 * result has no such field, and for NULL. Owned by the result.
 */
BP_EXTERN const char *bp_pg_result_error_field(const bp_pg_result_t *r, int field);

/** The number of rows; 0 for commands without rows, errors and NULL. */
BP_EXTERN int bp_pg_result_rows(const bp_pg_result_t *r);

/** The number of columns; 0 for commands without rows, errors and NULL. */
BP_EXTERN int bp_pg_result_cols(const bp_pg_result_t *r);

/** Column col's name (0-based); NULL when out of range. Owned by the result. */
BP_EXTERN const char *bp_pg_result_col_name(const bp_pg_result_t *r, int col);

/** Column col's type OID (23 int4, 25 text, 3802 jsonb…); 0 when out of range. */
BP_EXTERN unsigned int bp_pg_result_col_type(const bp_pg_result_t *r, int col);

/**
 * The text of a value (row and col 0-based), NUL-terminated, with its
 * length in *len (when len is not NULL). NULL (and *len 0) for SQL NULL and
 * out of range. Owned by the result.
 */
BP_EXTERN const char *bp_pg_result_value(const bp_pg_result_t *r, int row, int col, size_t *len);

/**
 * The rows a command affected (INSERT, UPDATE, DELETE, MERGE, or the rows a
 * SELECT returned, from the command tag); 0 when the tag has no count.
 */
BP_EXTERN long long bp_pg_result_affected(const bp_pg_result_t *r);

/**
 * Why the last operation failed or the connection broke ("connection to
 * server at \"127.0.0.1\", port 5432 failed: Connection refused…", "timed
 * out after 2s waiting for the result", "closed"…); "" when nothing failed.
 * Owned by the connection, valid until its next operation or close.
 */
BP_EXTERN const char *bp_pg_error(const bp_pg_conn_t *c);

/** Whether the connection can no longer send (see above); 1 for NULL. */
BP_EXTERN int bp_pg_broken(const bp_pg_conn_t *c);

/** Whether an operation is in flight: its waiter has not been woken yet. 0 for NULL. */
BP_EXTERN int bp_pg_busy(const bp_pg_conn_t *c);

/**
 * Close the connection and free it; accepts NULL; c is invalid afterwards.
 * Safe at any time: an operation in flight is abandoned and its waiter is
 * woken with BP_ECLOSED (later, from the loop: the memory goes once the
 * loop has released it). When the loop shuts down (bp_runtime_close), open
 * connections are disconnected without waking anyone; their memory still
 * waits for this call, which may then come after the loop is gone.
 */
BP_EXTERN void bp_pg_close(bp_pg_conn_t *c);

#endif
