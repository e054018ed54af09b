/* A module that is a peerpod module but lacks the provider's table: the
 * loader must say which symbol is missing. */
const int pp_provider_broken_version = 1;
