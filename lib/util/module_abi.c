/* Linked into every module by pp_module(): the loader checks it. */
#include "util/module.h"

#include "pp_module_abi.h"

const unsigned pp_module_abi = PP_MODULE_ABI;
