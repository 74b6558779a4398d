/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Fault injection for crash-consistency tests: crashpoint("name") kills the process with
 * SIGKILL when the environment variable BROKERD_CRASHPOINT is "name" (or "name:N", at its
 * N-th passage). The named points sit between the durable steps of a grant's lifecycle, so
 * a test can show that a restart converges from each of them. Unset (production), a
 * crashpoint costs one pointer test.
 */

void crashpoint(const char *name);
