// SPDX-License-Identifier: GPL-2.0
/*
 * The pin cache's watch on user memory (rust/pincache.rs): one
 * mmu_interval_notifier per cached run of pages. Its callback does one
 * thing: it marks the run stale, for any event on the range (unmap,
 * remap, protection change, fork, exit), so that the run is never used
 * again once the range may map other pages. Rust decides everything else:
 * what to cache, when to pin, when to let go.
 *
 * Without CONFIG_MMU_NOTIFIER nothing is cached (mdw_watch_new fails with
 * -EOPNOTSUPP) and MDW_WRITE_KEEP_PINS pins per call like any other call.
 */

#include <linux/err.h>
#include <linux/mmu_notifier.h>
#include <linux/sched.h>
#include <linux/slab.h>

#include "mdwrite_net.h"

struct mdw_watch {
#ifdef CONFIG_MMU_NOTIFIER
	struct mmu_interval_notifier mni;
#endif
	/* Set by the first invalidation, never cleared. */
	bool stale;
};

#ifdef CONFIG_MMU_NOTIFIER
/*
 * Runs before the range's page tables change, in any context (it may not
 * sleep: mmu_notifier_range_blockable() is not required). The pages stay
 * pinned, so nothing is freed under a call that still sends them; a call
 * that looked before this store sends the pages that were mapped then, as
 * a call that pinned them itself would have.
 */
static bool mdw_watch_invalidate(struct mmu_interval_notifier *mni,
				 const struct mmu_notifier_range *range,
				 unsigned long cur_seq)
{
	struct mdw_watch *w = container_of(mni, struct mdw_watch, mni);

	/*
	 * The interval's sequence (mmu_interval_set_seq) is not used: the
	 * run is never revalidated, only dropped.
	 */
	WRITE_ONCE(w->stale, true);
	return true;
}

static const struct mmu_interval_notifier_ops mdw_watch_ops = {
	.invalidate = mdw_watch_invalidate,
};
#endif

/*
 * Watches the @len bytes at @start of the calling task's memory; process
 * context, no mmap_lock held. -EOPNOTSUPP without MMU notifiers.
 */
struct mdw_watch *mdw_watch_new(unsigned long start, unsigned long len)
{
#ifdef CONFIG_MMU_NOTIFIER
	struct mdw_watch *w;
	int err;

	if (!current->mm)
		return ERR_PTR(-EFAULT);
	w = kzalloc(sizeof(*w), GFP_KERNEL_ACCOUNT);
	if (!w)
		return ERR_PTR(-ENOMEM);
	err = mmu_interval_notifier_insert(&w->mni, current->mm, start, len,
					   &mdw_watch_ops);
	if (err) {
		kfree(w);
		return ERR_PTR(err);
	}
	return w;
#else
	return ERR_PTR(-EOPNOTSUPP);
#endif
}

/*
 * Whether the range still maps what it mapped when watched, and is the
 * calling task's memory (a forked child or another process sharing the
 * file has memory of its own at the same addresses).
 */
bool mdw_watch_valid(const struct mdw_watch *w)
{
#ifdef CONFIG_MMU_NOTIFIER
	return !READ_ONCE(w->stale) && w->mni.mm == current->mm;
#else
	return false;
#endif
}

/* Stops watching and frees; process context (it may sleep). */
void mdw_watch_free(struct mdw_watch *w)
{
#ifdef CONFIG_MMU_NOTIFIER
	mmu_interval_notifier_remove(&w->mni);
#endif
	kfree(w);
}
