/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The interface between mdwrite's Rust code and its networking helpers in
 * mdwrite_net.c. Rust mirrors these declarations in rust/ffi.rs.
 */
#ifndef MDWRITE_NET_H
#define MDWRITE_NET_H

/* Longest packet header: common::template::MAX_HEADER_LEN (checked at load). */
#define MDW_MAX_HEADER 78

#include <linux/types.h>

struct file;
struct net;
struct page;
struct sk_buff;
struct mdw_dev;
struct mdw_done;
struct ubuf_info;

/* What the send path needs to know about a device. */
struct mdw_dev_info {
	/* dev->features and dev->vlan_features: a change asks for a new probe. */
	u64 features;
	u64 vlan_features;
	u32 ifindex;
	u32 mtu;
	u8 mac[6];
	bool ethernet;
	bool up;
	/* NETIF_F_VLAN_CHALLENGED: no 802.1Q frames. */
	bool vlan_challenged;
	/*
	 * A driver audited to leave the skbs it is given alone (dummy,
	 * virtio_net; see Documentation/design.rst) that needs no tailroom:
	 * its skbs may be recycled, i.e. handed over shared.
	 */
	bool recycle_ok;
};

/* What a device does with one destination's packets (mdw_dev_probe()). */
struct mdw_dev_caps {
	/* Page fragments (NETIF_F_SG): else packets are copied, linear. */
	bool sg;
	/* The UDP checksum of this packet shape is offloaded. */
	bool csum;
};

/* One payload fragment: part of a pinned page. */
struct mdw_frag {
	struct page *page;
	u32 off;
	u32 len;
};

/* The layout of a destination's packets: header length and offsets. */
struct mdw_layout {
	u32 hdr_len;
	u32 l3_off;
	u32 l4_off;
	bool ipv6;
	/* An 802.1Q tag follows the Ethernet addresses. */
	bool vlan;
	bool csum_partial;
};

/*
 * A destination's skbs in one call: what mdw_skb_rearm() and
 * mdw_skb_reuse() check them against (the layout and the file's keep
 * they are tied to) and the call's device.
 */
struct mdw_rearm {
	struct mdw_layout layout;
	struct ubuf_info *keep;
	const struct mdw_dev *dev;
};

/* Why mdw_xmit_direct() stopped before the end. */
#define MDW_TX_STOPPED	0	/* queue stopped or driver busy: retry */
#define MDW_TX_DOWN	1	/* device not running or no carrier */
#define MDW_TX_LOOP	2	/* transmit recursion limit reached */

/* mdw_skb_reuse() results. */
#define MDW_SKB_REUSED	0
#define MDW_SKB_BUSY	1
#define MDW_SKB_SPOILED	2

struct net *mdw_net_get_current(void);
void mdw_net_put(struct net *net);
bool mdw_file_capable_raw(const struct file *file, struct net *net);

struct mdw_dev *mdw_dev_get(struct net *net, int ifindex);
void mdw_dev_put(struct mdw_dev *d);
int mdw_dev_hold(struct mdw_dev *d, struct net *net, int ifindex);
void mdw_dev_unhold(struct mdw_dev *d);
int mdw_dev_events_init(void);
void mdw_dev_events_exit(void);
u64 mdw_dev_events(void);
bool mdw_dev_up(const struct mdw_dev *d);
void mdw_dev_info(const struct mdw_dev *d, struct mdw_dev_info *info);
int mdw_dev_probe(const struct mdw_dev *d, const struct mdw_layout *l,
		  const u8 *hdr, struct mdw_dev_caps *caps);
bool mdw_dev_nit_active(const struct mdw_dev *d);
int mdw_neigh_resolve(const struct mdw_dev *d, bool ipv6, const u8 *daddr,
		      u8 *mac);

struct mdw_done *mdw_done_new(void);
void mdw_done_wait_free(struct mdw_done *d);
int mdw_done_wait_killable(struct mdw_done *d, void *release);
void mdw_done_finish_async(struct mdw_done *d, void *call);
struct ubuf_info *mdw_keep_new(void);
void mdw_keep_put(struct ubuf_info *k);
int mdw_async_init(void);
void mdw_async_exit(void);
/* In Rust (rust/completion.rs): completes an asynchronous call. */
void mdw_async_complete(void *call);
/* In Rust (rust/completion.rs): releases an abandoned synchronous call. */
void mdw_call_release(void *release);

struct mmpin;
struct mmpin *mdw_memlock_charge(u64 bytes);
void mdw_memlock_uncharge(struct mmpin *m);

/* The pin cache's watch on user memory: mdwrite_pin.c. */
struct mdw_watch;
struct mdw_watch *mdw_watch_new(unsigned long start, unsigned long len);
bool mdw_watch_valid(const struct mdw_watch *w);
void mdw_watch_free(struct mdw_watch *w);

struct sk_buff *mdw_skb_new(const struct mdw_dev *d, const struct mdw_layout *l,
			    const struct mdw_frag *frags, u32 nfrags,
			    u32 payload_len, struct mdw_done *done,
			    struct ubuf_info *keep, u8 **hdr);
struct sk_buff *mdw_skb_new_linear(const struct mdw_dev *d,
				   const struct mdw_layout *l,
				   const struct mdw_frag *frags, u32 nfrags,
				   u32 payload_len, struct mdw_done *done,
				   bool hold, bool keep, u32 *sum, u8 **hdr);
int mdw_skb_reuse_linear(struct sk_buff *skb, const struct mdw_rearm *r,
			 const struct mdw_frag *frags, u32 nfrags,
			 u32 payload_len, u32 *sum, u8 **hdr);
u8 *mdw_skb_rearm_linear(struct sk_buff *skb, const struct mdw_rearm *r,
			 struct page *page0, struct page *page1, u32 off0,
			 u32 lens, u32 *sum);
int mdw_skb_reuse(struct sk_buff *skb, const struct mdw_rearm *r,
		  const struct mdw_frag *frags, u32 nfrags, u32 payload_len,
		  u8 **hdr);
u8 *mdw_skb_rearm(struct sk_buff *skb, const struct mdw_rearm *r,
		  struct page *page0, struct page *page1, u32 off0, u32 lens);
void mdw_skb_let_go(struct sk_buff *skb, struct mdw_done *done,
		    struct ubuf_info *keep);
void mdw_skb_free(struct sk_buff *skb);
void mdw_skb_release(struct sk_buff *skb);
u32 mdw_csum_frags(const struct mdw_frag *frags, u32 nfrags);

unsigned int mdw_xmit_direct(const struct mdw_dev *d, struct sk_buff **skbs,
			     unsigned int n, u32 flow, u64 watch, bool *held,
			     int *why);
unsigned int mdw_xmit_run(struct net_device *dev, struct sk_buff **skbs,
			  unsigned int n, u32 flow, u64 watch, bool *held,
			  int *why);

/* Paced release on the direct path (mdwrite_pace.c). */
struct mdw_pacer;
struct mdw_pacer *mdw_pacer_new(u32 flow);
unsigned int mdw_pacer_enqueue(struct mdw_pacer *p, struct sk_buff **skbs,
			       const u64 *times, unsigned int n);
void mdw_pacer_free(struct mdw_pacer *p);
void mdw_pace_faults_init(void);
void mdw_pace_faults_exit(void);
unsigned int mdw_xmit_qdisc(struct sk_buff **skbs, const u32 *lens,
			    unsigned int n, u64 *bytes);
bool mdw_xmit_wait(const struct mdw_dev *d);
u64 mdw_clock_ns(bool tai);
void mdw_skb_set_departure(struct sk_buff *skb, u64 ns, bool tai);
bool mdw_signal_pending(void);
bool mdw_fatal_signal_pending(void);
void mdw_cond_resched(void);
int mdw_ffi_check(size_t info, size_t frag, size_t layout, size_t rearm,
		  size_t caps, size_t max_header);

#endif /* MDWRITE_NET_H */
