/* The library's version (cutune/cutune.h), from the build. */
#include "cutune/cutune.h"

const char *ct_version(void) { return CUTUNE_VERSION; }
