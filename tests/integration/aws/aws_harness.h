/* What the AWS provider's own tests against the fake EC2 add to the shared
 * harness (tests/conformance/harness.h): the provider's settings, and the
 * fake's EC2-specific report. */
#ifndef PP_TEST_AWS_AWS_HARNESS_H
#define PP_TEST_AWS_AWS_HARNESS_H

#include "harness.h"
#include "providers/aws/aws.h"

#define AMI   "ami-0123456789abcdef0"
#define RATE  150
#define BURST 30

/* cmocka setup: resets the fake and the provider's environment. */
int harness_setup(void **state);
/* No refused signature, credential or parameter; no sandbox with two VMs. */
void assert_clean(json_t *rep);
json_t *last_run(json_t *rep);
const char *tag_of(json_t *run, const char *key);

/* Settings for the provider against the fake, with short backoffs. */
void base_env(void);
pp_provider_t *provider(void);

#endif
