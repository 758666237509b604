// SPDX-License-Identifier: GPL-2.0
/*
 * Test-runner canary: a module that misbehaves on request so the selftest
 * runner can prove it notices. Not part of mdwrite.
 *
 *   insmod mdw_canary.ko warn=1   -> one WARN splat
 *   insmod mdw_canary.ko leak=1   -> one kmemleak-visible leak
 */
#include <linux/module.h>
#include <linux/slab.h>

static bool warn;
module_param(warn, bool, 0444);
MODULE_PARM_DESC(warn, "WARN once at load");

static bool leak;
module_param(leak, bool, 0444);
MODULE_PARM_DESC(leak, "leak one allocation at load");

static int __init mdw_canary_init(void)
{
	WARN(warn, "mdw_canary: deliberate warning\n");
	if (leak) {
		char *p = kmalloc(96, GFP_KERNEL);

		if (p)
			strscpy(p, "mdw_canary deliberate leak", 96);
		OPTIMIZER_HIDE_VAR(p);
	}
	return 0;
}

static void __exit mdw_canary_exit(void)
{
}

module_init(mdw_canary_init);
module_exit(mdw_canary_exit);
MODULE_DESCRIPTION("mdwrite selftest runner canary");
MODULE_LICENSE("GPL");
