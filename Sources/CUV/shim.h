#ifndef SAGALANE_CUV_SHIM_H
#define SAGALANE_CUV_SHIM_H
#include <uv.h>
#endif
