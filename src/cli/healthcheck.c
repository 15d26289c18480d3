/* baseplate-healthcheck: not yet implemented. */
#include <stdio.h>

int main(void) {
  fprintf(stderr, "baseplate-healthcheck: not yet implemented\n");
  return 2;
}
