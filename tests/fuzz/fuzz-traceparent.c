/* W3C traceparent values (bp_trace_info_from_traceparent), as an HTTP
 * request's header brings them: never a crash or a read past the value;
 * what parses writes back as the same IDs. */
#include "baseplate/span.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bp_trace_info_t ti, back;
  char out[56];
  char *copy = malloc(size ? size : 1); /* exactly the value: ASan sees any overread */
  if (!copy) return 0;
  memcpy(copy, data, size);
  if (bp_trace_info_from_traceparent(&ti, copy, size) == BP_OK) {
    if (ti.trace_id == 0 || ti.parent_id == 0 || ti.span_id == 0 || (ti.sampled != 0 && ti.sampled != 1))
      abort();
    ti.span_id = ti.parent_id;
    bp_trace_info_to_traceparent(&ti, out);
    if (bp_trace_info_from_traceparent(&back, out, 55) != BP_OK || back.trace_id != ti.trace_id ||
        back.trace_id_high != ti.trace_id_high ||
        back.parent_id != ti.parent_id || back.sampled != ti.sampled)
      abort();
  }
  free(copy);
  return 0;
}
