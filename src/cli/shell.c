/* baseplate-shell: not yet implemented. */
#include <stdio.h>

int main(void) {
  fprintf(stderr, "baseplate-shell: not yet implemented\n");
  return 2;
}
