-- The FFI declarations of include/baseplate/kafka.h, shared by the Kafka
-- consumer factories (baseplate.frameworks.queue_consumer.kafka) and the
-- producer client (baseplate.clients.kafka), and the conversion of a
-- librdkafka property table to the C array they take.
local ffi = require("ffi")

ffi.cdef([[
typedef struct bp_kafka_s bp_kafka_t;
typedef struct bp_kafka_message_s {
  const char *topic;
  const char *payload;
  const char *key;
  size_t len;
  size_t key_len;
  int64_t offset;
  int64_t timestamp;
  int32_t partition;
  int err;
  int nheaders;
  void *rkm;
} bp_kafka_message_t;
bp_kafka_t *bp_kafka_consumer_new(const char *const *conf, int manual_commit, char *err,
                                  size_t errlen);
int bp_kafka_subscribe(bp_kafka_t *k, const char *const *topics, int n, char *err, size_t errlen);
int bp_kafka_consume(bp_kafka_t *k, bp_kafka_message_t *out, int max);
void bp_kafka_release(bp_kafka_message_t *msgs, int n);
int bp_kafka_header(const bp_kafka_message_t *m, int idx, const char **name, const char **value,
                    size_t *len);
int bp_kafka_wait(bp_kafka_t *k, int waiter);
void bp_kafka_unwait(bp_kafka_t *k);
int bp_kafka_rebalance_pending(bp_kafka_t *k, int *count);
int bp_kafka_rebalance_partition(bp_kafka_t *k, int idx, const char **topic, int32_t *partition);
int bp_kafka_rebalance_done(bp_kafka_t *k);
int bp_kafka_commit(bp_kafka_t *k, const char *topic, int32_t partition, int64_t next_offset,
                    int waiter);
int bp_kafka_commits_pending(bp_kafka_t *k);
int bp_kafka_consumer_close(bp_kafka_t *k);
int bp_kafka_closed(bp_kafka_t *k);
bp_kafka_t *bp_kafka_producer_new(const char *const *conf, char *err, size_t errlen);
int bp_kafka_produce(bp_kafka_t *k, const char *topic, int32_t partition, const char *value,
                     size_t len, const char *key, size_t key_len, const char *const *headers,
                     int nheaders, int waiter, char *err, size_t errlen);
const char *bp_kafka_error(bp_kafka_t *k);
void bp_kafka_free(bp_kafka_t *k);
]])

local M = {}

-- kafka.h's BP_KAFKA_* rebalance kinds (tests/lua/test-ffi-decls.lua checks them)
M.ASSIGN, M.REVOKE = 1, 2

--- { arr = a NULL-terminated const char*[] of `props` (name -> value), in
--- name order, keep = the strings it points at }: keep the table while
--- `arr` is used.
function M.conf_array(props)
    local names = {}
    for k in pairs(props) do names[#names + 1] = k end
    table.sort(names)
    local arr = ffi.new("const char *[?]", 2 * #names + 1)
    local keep = {}
    for i, k in ipairs(names) do
        local v = tostring(props[k])
        keep[#keep + 1] = k
        keep[#keep + 1] = v
        arr[2 * i - 2] = k
        arr[2 * i - 1] = v
    end
    arr[2 * #names] = nil
    return { arr = arr, keep = keep }
end

return M
