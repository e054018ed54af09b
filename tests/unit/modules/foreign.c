/* A shared object that is no peerpod module (no `pp_module_abi`). */
const int pp_provider_foreign_ops = 1;
