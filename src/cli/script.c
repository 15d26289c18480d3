/* baseplate-script: not yet implemented. */
#include <stdio.h>

int main(void) {
  fprintf(stderr, "baseplate-script: not yet implemented\n");
  return 2;
}
