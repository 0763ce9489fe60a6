/* placeholder until the owner of this command lands it */
#include <stdio.h>
#include "tools/commands.h"
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "gemma4 bench: not built yet\n"); return 1; }
