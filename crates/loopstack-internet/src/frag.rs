//! IP fragmentation and reassembly, IPv4 (RFC 791, RFC 815) and IPv6 (RFC 8200 4.5,
//! RFC 5722), with bounded memory and caller-supplied time.
//!
//! # Design
//!
//! One [`Reassembler`] type serves both families: datagrams are keyed by [`FragKey`], an enum
//! of the IPv4 key (source, destination, protocol, identification; RFC 791 3.2) and the IPv6
//! key (source, destination, identification; RFC 8200 4.5). The stack builds one per family,
//! from [`ReassemblyConfig::ipv4`] (30 s, like Linux `ipfrag_time`) and
//! [`ReassemblyConfig::ipv6`] (60 s, RFC 8200 4.5), so the two never compete for memory.
//!
//! The caller parses a packet with [`fragment_info`] (or [`ipv4_fragment_info`] /
//! [`ipv6_fragment_info`]), which uses `etherparse` to find the key, the offset, the M flag
//! and where the data starts, then hands the [`FragmentInfo`] and the packet to
//! [`Reassembler::insert`]. When the datagram is complete the reassembler **rebuilds the whole
//! packet itself** and returns it in one pooled buffer ([`Reassembled`]): for IPv4 the first
//! fragment's header (options included) with MF and the offset cleared, the total length set
//! and the checksum recomputed; for IPv6 the first fragment's unfragmentable part with the
//! Fragment header removed, the Next Header that named it patched and the payload length set.
//! So the caller never has to know how fragments were stored, and the output looks exactly
//! like an unfragmented packet (byte for byte the original, when the sender is well behaved).
//!
//! Each fragment is copied into its own pooled buffer (the offset-0 fragment with its headers,
//! others data only), and the memory a datagram holds is counted as the *capacity* of those
//! buffers, like Linux counts `skb->truesize`: a flood of 8-byte fragments pins 2 KiB buffers,
//! and the bound has to see that. Slots and fragment lists are allocated once, in
//! [`Reassembler::new`]; the packet path allocates nothing outside the pool.
//!
//! # Policies
//!
//! - **Overlap** (including a "duplicate" whose bytes or M flag differ): the whole datagram is
//!   discarded and remembered until its timeout, so later fragments of it are dropped too
//!   (RFC 5722 section 4). RFC 5722 only binds IPv6; IPv4 gets the same rule because merging
//!   overlapping data is how the classic overlap attacks (teardrop, IDS evasion, RFC 1858)
//!   work, and Linux has done the same for IPv4 since 2018 (commit 7969e5c40dfd, "ip: discard
//!   IPv4 datagrams with overlapping segments"). Exact duplicates are ignored, as RFC 5722
//!   allows.
//! - **Memory** and **datagram slots** are hard limits: a fragment that would go past
//!   `max_bytes`, or start a datagram when `max_datagrams` are in progress, is refused; held
//!   datagrams are not evicted to make room. Linux has done the same since its 2018 rework of
//!   fragment queues (the LRU evictor went; FragmentSmack, CVE-2018-5391, was fixed in the
//!   same period): eviction lets a flood destroy datagrams that were about to complete. Discarded-datagram records hold no memory and are
//!   reused first when slots run out.
//! - **Timeout** runs from the first-arriving fragment (RFC 8200 4.5; RFC 791's per-fragment
//!   TTL refresh is not used, as in Linux). [`Reassembler::poll`] reports each expired
//!   datagram with its offset-0 fragment, if that arrived, so the caller can send ICMP Time
//!   Exceeded code 1 (RFC 792, RFC 1122 3.3.2.4, RFC 8200 4.5): only then, quoting it.
//!   The driver must call `poll` by [`Reassembler::poll_at`]; `insert` never expires anything.
//! - A non-last fragment whose length is not a multiple of 8 is dropped with
//!   [`DropReason::NotMultipleOf8`] (RFC 8200 4.5: answer ICMPv6 Parameter Problem code 0
//!   pointing at the Payload Length). RFC 791 requires the same of IPv4 senders, so IPv4 gets
//!   the same drop rather than Linux's silent trimming.
//! - A fragment with offset 0 and no M flag (an IPv6 "atomic fragment", RFC 6946) is rebuilt
//!   and returned at once, never touching stored state.

use std::iter;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use etherparse::{
    Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice, Ipv6RawExtHeaderSlice,
};
use loopstack_buf::{BufError, PacketBuf, PacketPool, PoolError};
use loopstack_link::Instant;
use thiserror::Error;

use crate::ingress::{proto, set_ipv4_checksum};

/// Smallest MTU every IPv4 link must carry: 68 bytes (RFC 791 3.2, "Fragmentation").
pub const IPV4_MIN_MTU: usize = 68;
/// Smallest MTU every IPv6 link must carry: 1280 bytes (RFC 8200 section 5).
pub const IPV6_MIN_MTU: usize = 1280;
/// Most bytes of the offset-0 fragment kept for an ICMPv4 Time Exceeded quote: 576 - 20 - 8,
/// as much as fits in a 576-byte ICMP datagram (RFC 1812 4.3.2.3; RFC 792 asks for at least
/// the header plus 8 bytes).
pub const IPV4_QUOTE_MAX: usize = 548;
/// Most bytes of the offset-0 fragment kept for an ICMPv6 Time Exceeded quote: 1280 - 40 - 8,
/// as much as fits without exceeding the minimum IPv6 MTU (RFC 4443 2.4 (c)).
pub const IPV6_QUOTE_MAX: usize = 1232;

const IPV4_MAX_TOTAL: usize = 65535;
const IPV6_MAX_PAYLOAD: usize = 65535;
const IPV6_HEADER_LEN: usize = 40;
const FRAG_HEADER_LEN: usize = 8;
/// Preallocated fragment slots, `max_datagrams * max_fragments`, are capped so that a typo in
/// a configuration cannot allocate gigabytes (65536 slots is about 5 MiB).
const MAX_FRAGMENT_SLOTS: usize = 1 << 16;

/// What identifies the fragments of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FragKey {
    /// IPv4: source, destination, protocol and identification (RFC 791 3.2).
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
        /// The protocol field.
        protocol: u8,
        /// The identification field.
        id: u16,
    },
    /// IPv6: source, destination and the Fragment header's identification (RFC 8200 4.5; the
    /// next header is not part of the key there, unlike IPv4's protocol).
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
        /// The Fragment header's identification.
        id: u32,
    },
}

impl FragKey {
    fn is_v6(&self) -> bool {
        matches!(self, FragKey::V6 { .. })
    }
}

/// One fragment as the reassembler needs it, found by [`fragment_info`].
///
/// All positions are byte indices into the packet the info was parsed from; the packet itself
/// is passed again to [`Reassembler::insert`], which checks that they fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Which datagram the fragment belongs to.
    pub key: FragKey,
    /// Position of the fragment's data in the datagram's fragmentable part, in bytes.
    pub offset: usize,
    /// The MF / M flag: more fragments follow.
    pub more: bool,
    /// Bytes in front of the data: the IPv4 header, or the IPv6 unfragmentable part plus
    /// the 8-byte Fragment header.
    pub header_len: usize,
    /// Bytes of fragment data (link padding past the IP length excluded).
    pub data_len: usize,
    /// Bytes that the reassembled packet keeps in front of its data: the IPv4 header
    /// (equal to `header_len`), or the IPv6 header and extension headers before the Fragment
    /// header.
    pub unfragmentable_len: usize,
    /// Index of the byte naming the protocol after the unfragmentable part: 9 (IPv4
    /// protocol), or the Next Header field that names the Fragment header (IPv6).
    pub next_header_at: usize,
    /// The protocol after the unfragmentable part: IPv4 protocol, or the Fragment header's
    /// Next Header.
    pub next_header: u8,
}

impl FragmentInfo {
    /// Whether the positions are consistent with each other, the family and `packet`.
    fn fits(&self, packet: &[u8]) -> bool {
        let layout = if self.key.is_v6() {
            self.unfragmentable_len >= IPV6_HEADER_LEN
                && self.header_len == self.unfragmentable_len.saturating_add(FRAG_HEADER_LEN)
        } else {
            (20..=60).contains(&self.header_len) && self.unfragmentable_len == self.header_len
        };
        layout
            && self.next_header_at < self.unfragmentable_len
            && self.offset <= 65535
            && self
                .header_len
                .checked_add(self.data_len)
                .is_some_and(|end| end <= packet.len())
    }
}

/// Why a packet could not be read as a fragment, or fragmented.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FragInfoError {
    /// The packet ends before its headers or its length field says it does.
    #[error("truncated packet: {needed} bytes needed, {len} present")]
    Truncated {
        /// Bytes the headers call for.
        needed: usize,
        /// Bytes present.
        len: usize,
    },
    /// A header is invalid.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// Reads the fragment fields of an IPv4 or IPv6 packet, by its version nibble.
///
/// `Ok(None)` means the packet is not a fragment and needs no reassembly.
pub fn fragment_info(packet: &[u8]) -> Result<Option<FragmentInfo>, FragInfoError> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => ipv4_fragment_info(packet),
        Some(6) => ipv6_fragment_info(packet),
        Some(_) => Err(FragInfoError::Malformed("IP version is neither 4 nor 6")),
        None => Err(FragInfoError::Truncated { needed: 1, len: 0 }),
    }
}

/// Reads the fragment fields of an IPv4 packet (RFC 791 3.1). `Ok(None)` if it is not a
/// fragment (offset 0 and MF clear). The header checksum is not checked: the IP input path
/// does that before reassembly.
pub fn ipv4_fragment_info(packet: &[u8]) -> Result<Option<FragmentInfo>, FragInfoError> {
    let (h, header_len, total) = parse_ipv4(packet)?;
    let offset = usize::from(h.fragments_offset().byte_offset());
    let more = h.more_fragments();
    if offset == 0 && !more {
        return Ok(None);
    }
    Ok(Some(FragmentInfo {
        key: FragKey::V4 {
            src: h.source_addr(),
            dst: h.destination_addr(),
            protocol: h.protocol().0,
            id: h.identification(),
        },
        offset,
        more,
        header_len,
        data_len: total - header_len,
        unfragmentable_len: header_len,
        next_header_at: 9,
        next_header: h.protocol().0,
    }))
}

/// Reads the Fragment header of an IPv6 packet (RFC 8200 4.5). `Ok(None)` if there is no
/// Fragment header among the extension headers that may precede it (Hop-by-Hop, Destination
/// Options, Routing). An atomic fragment (offset 0, M clear; RFC 6946) is returned as a
/// fragment: [`Reassembler::insert`] strips its Fragment header without storing anything.
pub fn ipv6_fragment_info(packet: &[u8]) -> Result<Option<FragmentInfo>, FragInfoError> {
    let (h, total) = parse_ipv6(packet)?;
    let packet = &packet[..total];
    let mut next = h.next_header().0;
    let mut next_at = 6;
    let mut pos = IPV6_HEADER_LEN;
    loop {
        let rest = packet.get(pos..).unwrap_or_default();
        match next {
            proto::FRAGMENT => {
                let f = Ipv6FragmentHeaderSlice::from_slice(rest).map_err(|e| truncated(pos, e))?;
                let header_len = pos + FRAG_HEADER_LEN;
                return Ok(Some(FragmentInfo {
                    key: FragKey::V6 {
                        src: h.source_addr(),
                        dst: h.destination_addr(),
                        id: f.identification(),
                    },
                    offset: usize::from(f.fragment_offset().byte_offset()),
                    more: f.more_fragments(),
                    header_len,
                    data_len: total - header_len,
                    unfragmentable_len: pos,
                    next_header_at: next_at,
                    next_header: f.next_header().0,
                }));
            }
            proto::HOP_BY_HOP if pos != IPV6_HEADER_LEN => {
                // RFC 8200 4.1: Hop-by-Hop Options may only follow the IPv6 header.
                return Err(FragInfoError::Malformed(
                    "Hop-by-Hop Options header not first",
                ));
            }
            proto::HOP_BY_HOP | proto::DEST_OPTS | proto::ROUTING => {
                let ext = Ipv6RawExtHeaderSlice::from_slice(rest).map_err(|e| truncated(pos, e))?;
                next = ext.next_header().0;
                next_at = pos;
                pos += ext.slice().len();
            }
            _ => return Ok(None),
        }
    }
}

fn truncated(at: usize, e: etherparse::err::LenError) -> FragInfoError {
    FragInfoError::Truncated {
        needed: at.saturating_add(e.required_len),
        len: at.saturating_add(e.len),
    }
}

/// The IPv4 header, its length and the total length, checked against each other and the
/// packet.
fn parse_ipv4(packet: &[u8]) -> Result<(Ipv4HeaderSlice<'_>, usize, usize), FragInfoError> {
    use etherparse::err::ipv4::HeaderSliceError;
    let h = Ipv4HeaderSlice::from_slice(packet).map_err(|e| match e {
        HeaderSliceError::Len(e) => truncated(0, e),
        HeaderSliceError::Content(_) => FragInfoError::Malformed("invalid IPv4 header"),
    })?;
    let header_len = h.slice().len();
    let total = usize::from(h.total_len());
    if total < header_len {
        return Err(FragInfoError::Malformed(
            "IPv4 total length below header length",
        ));
    }
    if packet.len() < total {
        return Err(FragInfoError::Truncated {
            needed: total,
            len: packet.len(),
        });
    }
    Ok((h, header_len, total))
}

/// The IPv6 header and the packet's length by its payload length field.
fn parse_ipv6(packet: &[u8]) -> Result<(Ipv6HeaderSlice<'_>, usize), FragInfoError> {
    use etherparse::err::ipv6::HeaderSliceError;
    let h = Ipv6HeaderSlice::from_slice(packet).map_err(|e| match e {
        HeaderSliceError::Len(e) => truncated(0, e),
        HeaderSliceError::Content(_) => FragInfoError::Malformed("invalid IPv6 header"),
    })?;
    if h.payload_length() == 0 {
        // A jumbogram (RFC 2675) or garbage; jumbograms cannot be fragmented anyway.
        return Err(FragInfoError::Malformed(
            "IPv6 payload length 0 (jumbogram)",
        ));
    }
    let total = IPV6_HEADER_LEN + usize::from(h.payload_length());
    if packet.len() < total {
        return Err(FragInfoError::Truncated {
            needed: total,
            len: packet.len(),
        });
    }
    Ok((h, total))
}

/// Limits and timeout of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// How long a datagram may take to complete, from its first-arriving fragment.
    pub timeout: Duration,
    /// Most bytes of buffer capacity held across all datagrams (Linux `ipfrag_high_thresh`).
    pub max_bytes: usize,
    /// Most datagrams in reassembly at once (discarded-datagram records included).
    pub max_datagrams: usize,
    /// Most fragments of one datagram (at most 8192: 65535 bytes in 8-byte pieces).
    pub max_fragments: usize,
}

impl ReassemblyConfig {
    /// IPv4 defaults: 30 s like Linux `ipfrag_time` (RFC 791 suggests 15 s as a lower
    /// bound), 4 MiB like Linux `ipfrag_high_thresh`, 64 datagrams of up to 64 fragments.
    pub fn ipv4() -> Self {
        ReassemblyConfig {
            timeout: Duration::from_secs(30),
            max_bytes: 4 << 20,
            max_datagrams: 64,
            max_fragments: 64,
        }
    }

    /// IPv6 defaults: 60 s (RFC 8200 4.5), otherwise as [`ipv4`](Self::ipv4).
    pub fn ipv6() -> Self {
        ReassemblyConfig {
            timeout: Duration::from_secs(60),
            ..Self::ipv4()
        }
    }
}

/// Why a [`ReassemblyConfig`] was rejected.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReassemblyConfigError {
    /// `max_datagrams` or `max_fragments` is zero.
    #[error("max_datagrams and max_fragments must be at least 1")]
    Zero,
    /// `max_fragments` above 8192, or more than 65536 fragment slots in all.
    #[error("too many fragment slots: at most 8192 per datagram and 65536 in all")]
    TooLarge,
}

/// Why a fragment was dropped. Each reason has a counter in [`ReassemblyStats`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The fragment overlaps one already held, or repeats its range with other bytes or
    /// another M flag: the whole datagram is discarded (RFC 5722).
    #[error("overlapping fragment; datagram discarded")]
    Overlap,
    /// The datagram would have more than `max_fragments` fragments; it is discarded.
    #[error("too many fragments; datagram discarded")]
    TooManyFragments,
    /// `max_datagrams` are already in reassembly; the new datagram's fragment is refused.
    #[error("too many datagrams in reassembly")]
    TooManyDatagrams,
    /// Holding the fragment would go past `max_bytes`; it is refused.
    #[error("reassembly memory limit reached")]
    MemoryLimit,
    /// The datagram would be longer than 65535 bytes (IPv4 total length, IPv6 payload
    /// length). For IPv6 the caller may send Parameter Problem code 0 pointing at the
    /// Fragment Offset field (as Linux does).
    #[error("reassembled datagram would exceed 65535 bytes")]
    TooBig,
    /// A fragment with M set whose length is not a multiple of 8. For IPv6 the caller should
    /// send Parameter Problem code 0 pointing at the Payload Length field (RFC 8200 4.5).
    #[error("non-last fragment length not a multiple of 8")]
    NotMultipleOf8,
    /// The fragment lies beyond the end set by the last fragment, or a second last fragment
    /// disagrees about the end; the datagram is discarded.
    #[error("fragment beyond the datagram's end; datagram discarded")]
    BeyondLast,
    /// The datagram was discarded earlier; its later fragments are dropped until its timeout
    /// (RFC 5722 section 4). Not counted in `reasm_fails`: the discard was.
    #[error("fragment of a discarded datagram")]
    AfterDiscard,
    /// The buffer pool had no buffer for the fragment or the reassembled packet.
    #[error("no packet buffer")]
    NoBuffer,
    /// The [`FragmentInfo`] does not fit the packet, or a non-last fragment is empty.
    #[error("malformed fragment")]
    Malformed,
}

/// What [`Reassembler::insert`] did with a fragment.
#[derive(Debug)]
pub enum FragResult {
    /// Stored (or an exact duplicate, ignored); the datagram is not complete yet.
    Incomplete,
    /// The fragment completed its datagram.
    Complete(Reassembled),
    /// The fragment was dropped.
    Dropped(DropReason),
}

/// A reassembled datagram, rebuilt as one unfragmented packet.
#[derive(Debug)]
pub struct Reassembled {
    /// The datagram's key.
    pub key: FragKey,
    /// The whole packet: IPv4 header (MF and offset clear, length and checksum fixed), or
    /// IPv6 header and unfragmentable extension headers (Fragment header removed, payload
    /// length fixed), then the data.
    pub packet: PacketBuf,
    /// Bytes of header in front of the data (`strip_front` this to get the payload).
    pub header_len: usize,
    /// The protocol of the data: IPv4 protocol, or the first fragment's Fragment header's
    /// Next Header.
    pub next_header: u8,
    /// Number of fragments it was built from.
    pub fragments: usize,
}

/// A datagram given up on by [`Reassembler::poll`].
#[derive(Debug)]
pub struct Expired {
    /// The datagram's key.
    pub key: FragKey,
    /// The offset-0 fragment as received, cut to [`IPV4_QUOTE_MAX`] / [`IPV6_QUOTE_MAX`]
    /// bytes, if it arrived: then, and only then, send ICMP Time Exceeded code 1 ("fragment
    /// reassembly time exceeded") quoting it (RFC 792, RFC 8200 4.5).
    pub first: Option<PacketBuf>,
}

/// Counters, named after Linux `/proc/net/snmp` where one exists, plus the current usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReassemblyStats {
    /// `ReasmReqds`: fragments received.
    pub reasm_reqds: u64,
    /// `ReasmOKs`: datagrams reassembled (atomic fragments included).
    pub reasm_oks: u64,
    /// `ReasmFails`: failures: each dropped fragment except [`DropReason::AfterDiscard`]
    /// (a discarded datagram counts once), and each timeout.
    pub reasm_fails: u64,
    /// `ReasmTimeout`: datagrams expired (discarded-datagram records expire silently).
    pub reasm_timeout: u64,
    /// Exact duplicates ignored.
    pub duplicates: u64,
    /// Drops for [`DropReason::Overlap`].
    pub overlaps: u64,
    /// Drops for [`DropReason::TooManyFragments`].
    pub too_many_fragments: u64,
    /// Drops for [`DropReason::TooManyDatagrams`].
    pub too_many_datagrams: u64,
    /// Drops for [`DropReason::MemoryLimit`].
    pub memory_limit: u64,
    /// Drops for [`DropReason::TooBig`].
    pub too_big: u64,
    /// Drops for [`DropReason::NotMultipleOf8`].
    pub not_multiple_of_8: u64,
    /// Drops for [`DropReason::BeyondLast`].
    pub beyond_last: u64,
    /// Drops for [`DropReason::AfterDiscard`].
    pub after_discard: u64,
    /// Drops for [`DropReason::NoBuffer`].
    pub no_buffer: u64,
    /// Drops for [`DropReason::Malformed`].
    pub malformed: u64,
    /// Datagrams in reassembly now.
    pub datagrams: usize,
    /// Discarded datagrams remembered now.
    pub discarded: usize,
    /// Bytes of buffer capacity held now.
    pub held_bytes: usize,
    /// The most bytes ever held at once.
    pub held_bytes_high_water: usize,
}

/// One stored fragment: `buf[data_start..]` is its data.
#[derive(Debug)]
struct Frag {
    offset: usize,
    end: usize,
    more: bool,
    data_start: usize,
    buf: PacketBuf,
}

impl Frag {
    fn data(&self) -> &[u8] {
        self.buf.get(self.data_start..).unwrap_or_default()
    }
}

/// What the rebuild needs from the offset-0 fragment (its bytes stay in its buffer).
#[derive(Debug, Clone, Copy)]
struct FirstMeta {
    unfragmentable_len: usize,
    next_header_at: usize,
    next_header: u8,
}

impl From<&FragmentInfo> for FirstMeta {
    fn from(i: &FragmentInfo) -> Self {
        FirstMeta {
            unfragmentable_len: i.unfragmentable_len,
            next_header_at: i.next_header_at,
            next_header: i.next_header,
        }
    }
}

#[derive(Debug)]
struct Datagram {
    key: FragKey,
    deadline: Instant,
    /// Sorted by offset, never overlapping; capacity `max_fragments`, reserved up front.
    frags: Vec<Frag>,
    /// Data bytes held; since fragments never overlap, complete when equal to `total`.
    received: usize,
    /// Data length, known once the last fragment (M clear) arrived.
    total: Option<usize>,
    /// Buffer capacity held.
    bytes: usize,
    first: Option<FirstMeta>,
    /// Discarded (RFC 5722): holds nothing, drops later fragments until `deadline`.
    discarded: bool,
}

/// Reassembles fragmented datagrams of one address family, within fixed memory.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    pool: PacketPool,
    /// In arrival order of their first fragments: the front is the oldest.
    datagrams: Vec<Datagram>,
    /// Empty fragment lists of `max_fragments` capacity, one per free slot.
    spare: Vec<Vec<Frag>>,
    held: usize,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// A reassembler taking its buffers from `pool`. Allocates every slot now.
    pub fn new(config: ReassemblyConfig, pool: PacketPool) -> Result<Self, ReassemblyConfigError> {
        if config.max_datagrams == 0 || config.max_fragments == 0 {
            return Err(ReassemblyConfigError::Zero);
        }
        let slots = config.max_datagrams.checked_mul(config.max_fragments);
        if config.max_fragments > 8192 || slots.is_none_or(|s| s > MAX_FRAGMENT_SLOTS) {
            return Err(ReassemblyConfigError::TooLarge);
        }
        Ok(Reassembler {
            config,
            pool,
            datagrams: Vec::with_capacity(config.max_datagrams),
            spare: (0..config.max_datagrams)
                .map(|_| Vec::with_capacity(config.max_fragments))
                .collect(),
            held: 0,
            stats: ReassemblyStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ReassemblyConfig {
        &self.config
    }

    /// Bytes of buffer capacity held now; never above `max_bytes`.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Counters and current usage.
    pub fn stats(&self) -> ReassemblyStats {
        let discarded = self.datagrams.iter().filter(|d| d.discarded).count();
        ReassemblyStats {
            datagrams: self.datagrams.len() - discarded,
            discarded,
            held_bytes: self.held,
            ..self.stats
        }
    }

    /// Adds one fragment, described by `info` (from [`fragment_info`]) of `packet`.
    pub fn insert(&mut self, now: Instant, info: &FragmentInfo, packet: &[u8]) -> FragResult {
        self.stats.reasm_reqds += 1;
        if !info.fits(packet) {
            return self.refuse(DropReason::Malformed);
        }
        let data_end = info.header_len + info.data_len;
        let data = &packet[info.header_len..data_end];
        let (offset, end, more) = (info.offset, info.offset + info.data_len, info.more);

        if offset == 0 && !more {
            // RFC 6946 4: an atomic fragment is processed in isolation from any others.
            let built = rebuild(
                &self.pool,
                info.key,
                &FirstMeta::from(info),
                packet,
                info.data_len,
                iter::once(data),
            );
            return self.finish(info.key, FirstMeta::from(info), 1, built);
        }
        if more && info.data_len % 8 != 0 {
            return self.refuse(DropReason::NotMultipleOf8);
        }
        if more && info.data_len == 0 {
            return self.refuse(DropReason::Malformed);
        }
        // Before the first fragment is seen its header length is unknown: bound by the
        // smallest IPv4 header here, and check exactly when rebuilding.
        let max_end = match info.key {
            FragKey::V4 { .. } => IPV4_MAX_TOTAL - 20,
            FragKey::V6 { .. } => {
                IPV6_MAX_PAYLOAD.saturating_sub(info.unfragmentable_len - IPV6_HEADER_LEN)
            }
        };
        if end > max_end {
            return self.refuse(DropReason::TooBig);
        }

        let found = self.datagrams.iter().position(|d| d.key == info.key);
        let mut pos = 0;
        let mut reuse = None;
        match found {
            Some(i) if self.datagrams[i].discarded => return self.refuse(DropReason::AfterDiscard),
            Some(i) => match check_fragment(&self.datagrams[i], offset, end, more, data) {
                Check::Insert(_) if self.datagrams[i].frags.len() >= self.config.max_fragments => {
                    return self.discard(i, DropReason::TooManyFragments);
                }
                Check::Insert(p) => pos = p,
                Check::Duplicate => {
                    self.stats.duplicates += 1;
                    return FragResult::Incomplete;
                }
                Check::Discard(reason) => return self.discard(i, reason),
            },
            None if self.datagrams.len() >= self.config.max_datagrams => {
                // A discarded-datagram record holds no memory: the oldest gives way.
                match self.datagrams.iter().position(|d| d.discarded) {
                    Some(t) => reuse = Some(t),
                    None => return self.refuse(DropReason::TooManyDatagrams),
                }
            }
            None => {}
        }

        // The offset-0 fragment keeps its headers: the rebuild and any ICMP quote need them.
        let (keep, data_start) = if offset == 0 {
            (&packet[..data_end], info.header_len)
        } else {
            (data, 0)
        };
        let Ok(buf) = self.pool.alloc_from_slice(keep) else {
            return self.refuse(DropReason::NoBuffer);
        };
        let cost = buf.capacity();
        if self.held.saturating_add(cost) > self.config.max_bytes {
            return self.refuse(DropReason::MemoryLimit);
        }
        if let Some(t) = reuse {
            self.remove(t);
        }
        let i = match found {
            Some(i) => i,
            None => {
                self.datagrams.push(Datagram {
                    key: info.key,
                    deadline: now + self.config.timeout,
                    frags: self.spare.pop().unwrap_or_default(),
                    received: 0,
                    total: None,
                    bytes: 0,
                    first: None,
                    discarded: false,
                });
                self.datagrams.len() - 1
            }
        };
        self.held += cost;
        self.stats.held_bytes_high_water = self.stats.held_bytes_high_water.max(self.held);
        let d = &mut self.datagrams[i];
        d.frags.insert(
            pos,
            Frag {
                offset,
                end,
                more,
                data_start,
                buf,
            },
        );
        d.received += info.data_len;
        d.bytes += cost;
        if !more {
            d.total = Some(end);
        }
        if offset == 0 {
            d.first = Some(FirstMeta::from(info));
        }
        if d.total != Some(d.received) {
            return FragResult::Incomplete;
        }
        // Complete: the fragments cover 0..total without overlap, so the first is offset 0.
        let d = self.remove(i);
        let built = match (d.first, d.frags.first()) {
            (Some(meta), Some(first)) => rebuild(
                &self.pool,
                d.key,
                &meta,
                first.buf.as_slice(),
                d.received,
                d.frags.iter().map(Frag::data),
            ),
            _ => Err(DropReason::Malformed),
        };
        let (key, meta, n) = (d.key, d.first, d.frags.len());
        self.recycle(d.frags);
        match meta {
            Some(meta) => self.finish(key, meta, n, built),
            None => self.refuse(DropReason::Malformed),
        }
    }

    /// Expires every datagram whose timeout has passed at `now`, calling `on_expired` for
    /// each (oldest first) and returning how many. Discarded-datagram records are forgotten
    /// silently.
    pub fn poll(&mut self, now: Instant, on_expired: &mut impl FnMut(Expired)) -> usize {
        let mut expired = 0;
        let mut i = 0;
        while i < self.datagrams.len() {
            if self.datagrams[i].deadline > now {
                i += 1;
                continue;
            }
            let mut d = self.remove(i);
            if !d.discarded {
                expired += 1;
                self.stats.reasm_timeout += 1;
                self.stats.reasm_fails += 1;
                let quote = if d.key.is_v6() {
                    IPV6_QUOTE_MAX
                } else {
                    IPV4_QUOTE_MAX
                };
                // Sorted by offset: the offset-0 fragment, if held, is the first.
                let first = match d.first {
                    Some(_) => d.frags.drain(..).next().map(|f| {
                        let mut b = f.buf;
                        b.truncate(quote);
                        b
                    }),
                    None => None,
                };
                on_expired(Expired { key: d.key, first });
            }
            self.recycle(d.frags);
        }
        expired
    }

    /// Whether no datagram is being reassembled, so [`poll`](Self::poll) has nothing to do
    /// and [`poll_at`](Self::poll_at) is `None`.
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// When [`poll`](Self::poll) next has something to do: the earliest deadline.
    pub fn poll_at(&self) -> Option<Instant> {
        self.datagrams.iter().map(|d| d.deadline).min()
    }

    /// Removes datagram `i`, releasing its memory from the count (its buffers go back to the
    /// pool when the caller drops or recycles its fragment list).
    fn remove(&mut self, i: usize) -> Datagram {
        let d = self.datagrams.remove(i);
        self.held -= d.bytes;
        d
    }

    fn recycle(&mut self, mut frags: Vec<Frag>) {
        frags.clear();
        self.spare.push(frags);
    }

    /// Discards datagram `i` but remembers it until its deadline (RFC 5722 section 4).
    fn discard(&mut self, i: usize, reason: DropReason) -> FragResult {
        let d = &mut self.datagrams[i];
        self.held -= d.bytes;
        d.bytes = 0;
        d.received = 0;
        d.first = None;
        d.frags.clear();
        d.discarded = true;
        self.refuse(reason)
    }

    fn finish(
        &mut self,
        key: FragKey,
        meta: FirstMeta,
        fragments: usize,
        built: Result<PacketBuf, DropReason>,
    ) -> FragResult {
        match built {
            Ok(packet) => {
                self.stats.reasm_oks += 1;
                FragResult::Complete(Reassembled {
                    key,
                    packet,
                    header_len: meta.unfragmentable_len,
                    next_header: meta.next_header,
                    fragments,
                })
            }
            Err(reason) => self.refuse(reason),
        }
    }

    fn refuse(&mut self, reason: DropReason) -> FragResult {
        let s = &mut self.stats;
        let counter = match reason {
            DropReason::Overlap => &mut s.overlaps,
            DropReason::TooManyFragments => &mut s.too_many_fragments,
            DropReason::TooManyDatagrams => &mut s.too_many_datagrams,
            DropReason::MemoryLimit => &mut s.memory_limit,
            DropReason::TooBig => &mut s.too_big,
            DropReason::NotMultipleOf8 => &mut s.not_multiple_of_8,
            DropReason::BeyondLast => &mut s.beyond_last,
            DropReason::AfterDiscard => &mut s.after_discard,
            DropReason::NoBuffer => &mut s.no_buffer,
            DropReason::Malformed => &mut s.malformed,
        };
        *counter += 1;
        if reason != DropReason::AfterDiscard {
            s.reasm_fails += 1;
        }
        FragResult::Dropped(reason)
    }
}

enum Check {
    Insert(usize),
    Duplicate,
    Discard(DropReason),
}

/// Where `offset..end` goes among `d`'s fragments, or why it cannot go anywhere.
fn check_fragment(d: &Datagram, offset: usize, end: usize, more: bool, data: &[u8]) -> Check {
    let pos = d.frags.partition_point(|f| f.offset < offset);
    if let Some(f) = d.frags.get(pos) {
        if f.offset == offset && f.end == end {
            // RFC 5722 allows ignoring exact duplicates; anything else is an overlap.
            let same = f.more == more && f.data() == data;
            return if same {
                Check::Duplicate
            } else {
                Check::Discard(DropReason::Overlap)
            };
        }
        if f.offset < end {
            return Check::Discard(DropReason::Overlap);
        }
    }
    if pos > 0 && d.frags[pos - 1].end > offset {
        return Check::Discard(DropReason::Overlap);
    }
    let max_end = d.frags.last().map_or(0, |f| f.end);
    let beyond = if more {
        d.total.is_some_and(|t| end > t)
    } else {
        d.total.is_some_and(|t| t != end) || max_end > end
    };
    if beyond {
        Check::Discard(DropReason::BeyondLast)
    } else {
        Check::Insert(pos)
    }
}

/// Builds the unfragmented packet: the first fragment's unfragmentable part (from `first`,
/// its bytes as received), patched, then `pieces` (the data, `total` bytes in order).
fn rebuild<'a>(
    pool: &PacketPool,
    key: FragKey,
    meta: &FirstMeta,
    first: &[u8],
    total: usize,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> Result<PacketBuf, DropReason> {
    let unfrag = meta.unfragmentable_len;
    let header = first.get(..unfrag).ok_or(DropReason::Malformed)?;
    let length = if key.is_v6() {
        unfrag - IPV6_HEADER_LEN + total
    } else {
        unfrag + total
    };
    let length = u16::try_from(length).map_err(|_| DropReason::TooBig)?;
    let mut buf = pool
        .alloc(unfrag + total)
        .map_err(|_| DropReason::NoBuffer)?;
    buf.extend_from_slice(header)
        .map_err(|_| DropReason::NoBuffer)?;
    for piece in pieces {
        buf.extend_from_slice(piece)
            .map_err(|_| DropReason::NoBuffer)?;
    }
    let b = buf.as_mut_slice();
    if key.is_v6() {
        // RFC 8200 4.5: the reassembled packet's Payload Length counts the unfragmentable
        // extension headers and the data; the header that named the Fragment header now
        // names the first fragment's Next Header.
        put(b, 4, &length.to_be_bytes());
        put(b, meta.next_header_at, &[meta.next_header]);
    } else {
        // RFC 791 3.2, reassembly: total length set, MF and offset cleared (DF and the
        // reserved bit kept), checksum over the new header.
        put(b, 2, &length.to_be_bytes());
        let flags = b.get(6).map_or(0, |f| f & 0xC0);
        put(b, 6, &[flags, 0]);
        set_ipv4_checksum(b, unfrag);
    }
    Ok(buf)
}

/// Writes `bytes` at `at` if they fit (they always do once the layout was checked).
fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = b.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Why a packet could not be fragmented.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FragError {
    /// The IPv4 packet has DF set and is larger than the MTU: answer ICMP Destination
    /// Unreachable, Fragmentation Needed, with this MTU (RFC 792, RFC 1191).
    #[error("packet larger than MTU {mtu} with DF set")]
    DontFragment {
        /// The MTU to report.
        mtu: usize,
    },
    /// The MTU is below the family's minimum (68 for IPv4, 1280 for IPv6).
    #[error("MTU {mtu} below the minimum {min}")]
    MtuTooSmall {
        /// The MTU given.
        mtu: usize,
        /// The family's minimum.
        min: usize,
    },
    /// The IPv6 unfragmentable part leaves no room for 8 bytes of data per fragment.
    #[error("{len} bytes of unfragmentable headers leave no room for data at MTU {mtu}")]
    HeadersTooLong {
        /// Length of the unfragmentable part plus the Fragment header.
        len: usize,
        /// The MTU.
        mtu: usize,
    },
    /// The packet is not valid.
    #[error(transparent)]
    Invalid(#[from] FragInfoError),
    /// No buffer for a fragment. Fragments already passed to `out` stay sent: the receiver
    /// will time the datagram out.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A buffer could not take a fragment (not expected: each is allocated to size).
    #[error(transparent)]
    Buf(#[from] BufError),
}

/// A pooled buffer holding `parts`, concatenated.
fn assemble(pool: &PacketPool, parts: &[&[u8]]) -> Result<PacketBuf, FragError> {
    let mut buf = pool.alloc(parts.iter().map(|p| p.len()).sum())?;
    for part in parts {
        buf.extend_from_slice(part)?;
    }
    Ok(buf)
}

/// Splits an IPv4 packet into fragments of at most `mtu` bytes, passing each to `out` in
/// order, and returns how many (RFC 791 3.2, "An Example Fragmentation Procedure").
///
/// A packet that fits is passed on as one unchanged copy. Each fragment's data is a multiple
/// of 8 bytes but the last's; the first fragment carries all the options, later ones only
/// those with the "copied" flag (RFC 791 3.1). An existing fragment can be fragmented again:
/// offsets add up and the last piece keeps the original MF.
pub fn fragment_ipv4(
    packet: &[u8],
    mtu: usize,
    pool: &PacketPool,
    out: &mut impl FnMut(PacketBuf),
) -> Result<usize, FragError> {
    if mtu < IPV4_MIN_MTU {
        return Err(FragError::MtuTooSmall {
            mtu,
            min: IPV4_MIN_MTU,
        });
    }
    let (h, header_len, total) = parse_ipv4(packet)?;
    if total <= mtu {
        out(assemble(pool, &[&packet[..total]])?);
        return Ok(1);
    }
    if h.dont_fragment() {
        return Err(FragError::DontFragment { mtu });
    }
    let header = &packet[..header_len];
    let mut later = [0u8; 60];
    later[..20].copy_from_slice(&header[..20]);
    let later_len = 20 + copied_options(&header[20..], &mut later[20..])?;
    later[0] = 0x40 | (later_len / 4) as u8;

    let data = &packet[header_len..total];
    let base = usize::from(h.fragments_offset().byte_offset());
    let (mut pos, mut count) = (0, 0);
    while pos < data.len() {
        let hdr = if pos == 0 {
            header
        } else {
            &later[..later_len]
        };
        // mtu >= 68 and a header <= 60 bytes leave at least 8 bytes of data.
        let n = ((mtu - hdr.len()) & !7).min(data.len() - pos);
        let last = pos + n == data.len();
        let offset = (base + pos) / 8;
        if offset > 0x1FFF {
            return Err(FragInfoError::Malformed("fragment offset past 65528").into());
        }
        let mut buf = assemble(pool, &[hdr, &data[pos..pos + n]])?;
        let b = buf.as_mut_slice();
        put(b, 2, &((hdr.len() + n) as u16).to_be_bytes());
        let mf = if !last || h.more_fragments() {
            0x2000
        } else {
            0
        };
        let reserved = u16::from(b[6] & 0x80) << 8;
        put(b, 6, &(reserved | mf | offset as u16).to_be_bytes());
        set_ipv4_checksum(b, hdr.len());
        out(buf);
        count += 1;
        pos += n;
    }
    Ok(count)
}

/// Copies the options with the "copied" flag (type bit 0x80) from `opts` into `dst`, padded
/// with End of Option List to a multiple of 4 bytes, and returns the padded length.
fn copied_options(opts: &[u8], dst: &mut [u8]) -> Result<usize, FragError> {
    let bad = || FragError::from(FragInfoError::Malformed("invalid IPv4 option"));
    let (mut i, mut w) = (0, 0);
    while let Some(&kind) = opts.get(i) {
        match kind {
            0 => break,  // End of Option List
            1 => i += 1, // No Operation
            _ => {
                let len = usize::from(*opts.get(i + 1).ok_or_else(bad)?);
                let opt = opts.get(i..i + len).filter(|_| len >= 2).ok_or_else(bad)?;
                if kind & 0x80 != 0 {
                    dst.get_mut(w..w + len)
                        .ok_or_else(bad)?
                        .copy_from_slice(opt);
                    w += len;
                }
                i += len;
            }
        }
    }
    let padded = w.next_multiple_of(4);
    dst.get_mut(w..padded).ok_or_else(bad)?.fill(0);
    Ok(padded)
}

/// Splits an IPv6 packet into fragments of at most `mtu` bytes with a Fragment header
/// carrying `identification`, passing each to `out` in order, and returns how many
/// (RFC 8200 4.5). A packet that fits is passed on as one unchanged copy.
///
/// The unfragmentable part is the IPv6 header plus the extension headers up to and
/// including the last Routing header, or else the Hop-by-Hop Options header (RFC 8200 4.5);
/// a Destination Options header after them travels in the fragmentable part. RFC 7112's
/// rule that the first fragment hold the whole header chain is the sender's business: with
/// an MTU of at least 1280 and loopstack's short chains it always holds.
pub fn fragment_ipv6(
    packet: &[u8],
    mtu: usize,
    identification: u32,
    pool: &PacketPool,
    out: &mut impl FnMut(PacketBuf),
) -> Result<usize, FragError> {
    if mtu < IPV6_MIN_MTU {
        return Err(FragError::MtuTooSmall {
            mtu,
            min: IPV6_MIN_MTU,
        });
    }
    let (h, total) = parse_ipv6(packet)?;
    let packet = &packet[..total];
    if total <= mtu {
        out(assemble(pool, &[packet])?);
        return Ok(1);
    }
    // Walk the chain, remembering the end of the unfragmentable part and the Next Header
    // field that names what follows it.
    let (mut next, mut next_at, mut pos) = (h.next_header().0, 6, IPV6_HEADER_LEN);
    let (mut unfrag, mut unfrag_next_at) = (pos, next_at);
    while matches!(next, proto::HOP_BY_HOP | proto::ROUTING | proto::DEST_OPTS) {
        if next == proto::HOP_BY_HOP && pos != IPV6_HEADER_LEN {
            return Err(FragInfoError::Malformed("Hop-by-Hop Options header not first").into());
        }
        let rest = packet.get(pos..).unwrap_or_default();
        let ext = Ipv6RawExtHeaderSlice::from_slice(rest).map_err(|e| truncated(pos, e))?;
        let here = next;
        next_at = pos;
        next = ext.next_header().0;
        pos += ext.slice().len();
        if here != proto::DEST_OPTS {
            (unfrag, unfrag_next_at) = (pos, next_at);
        }
    }
    if next == proto::FRAGMENT {
        return Err(FragInfoError::Malformed("packet already has a Fragment header").into());
    }
    let header = &packet[..unfrag];
    let next_header = packet[unfrag_next_at];
    let room = mtu.saturating_sub(unfrag + FRAG_HEADER_LEN) & !7;
    if room == 0 {
        return Err(FragError::HeadersTooLong {
            len: unfrag + FRAG_HEADER_LEN,
            mtu,
        });
    }
    let data = &packet[unfrag..];
    let (mut pos, mut count) = (0, 0);
    while pos < data.len() {
        let n = room.min(data.len() - pos);
        let more = u16::from(pos + n < data.len());
        // Offsets fit 13 bits: data is at most 65535 bytes and each offset a multiple of 8.
        let frag_header = [
            [next_header, 0],
            ((pos as u16) | more).to_be_bytes(),
            [(identification >> 24) as u8, (identification >> 16) as u8],
            [(identification >> 8) as u8, identification as u8],
        ];
        let mut buf = assemble(
            pool,
            &[header, frag_header.as_flattened(), &data[pos..pos + n]],
        )?;
        let b = buf.as_mut_slice();
        put(
            b,
            4,
            &((unfrag - IPV6_HEADER_LEN + FRAG_HEADER_LEN + n) as u16).to_be_bytes(),
        );
        put(b, unfrag_next_at, &[proto::FRAGMENT]);
        out(buf);
        count += 1;
        pos += n;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header};
    use loopstack_buf::{PoolConfig, SizeClass};
    use loopstack_link::Rng;

    const T0: Instant = Instant::ZERO;

    fn pool() -> PacketPool {
        PacketPool::new(PoolConfig {
            headroom: PoolConfig::DEFAULT_HEADROOM,
            classes: vec![
                SizeClass {
                    capacity: 1920,
                    count: 1024,
                },
                SizeClass {
                    capacity: PoolConfig::MAX_IP_PACKET,
                    count: 8,
                },
            ],
        })
        .unwrap()
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(131) >> 3) as u8 ^ seed)
            .collect()
    }

    /// A whole IPv4 packet of `total` bytes, options included, DF clear, valid checksum.
    fn v4_packet(total: usize, id: u16, options: &[u8]) -> Vec<u8> {
        let mut h =
            Ipv4Header::new(0, 64, IpNumber::UDP, [192, 0, 2, 1], [198, 51, 100, 7]).unwrap();
        h.options = options.try_into().unwrap();
        h.total_len = total as u16;
        h.identification = id;
        h.dont_fragment = false;
        h.header_checksum = h.calc_header_checksum();
        let mut v = h.to_bytes().to_vec();
        v.extend(pattern(total - v.len(), id as u8));
        v
    }

    /// A whole IPv6 packet of `total` bytes, with raw extension headers `exts` (each naming
    /// the next) in front of a UDP payload.
    fn v6_packet(total: usize, exts: &[u8], first_nh: u8) -> Vec<u8> {
        let h = Ipv6Header {
            traffic_class: 0,
            flow_label: Ipv6FlowLabel::ZERO,
            payload_length: (total - 40) as u16,
            next_header: IpNumber(if exts.is_empty() { 17 } else { first_nh }),
            hop_limit: 64,
            source: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            destination: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        };
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(exts);
        v.extend(pattern(total - v.len(), 6));
        v
    }

    /// Hop-by-Hop (PadN) then Routing (type 0, segments left 0) then UDP.
    const HBH_ROUTING: [u8; 16] = [43, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0];

    /// One hand-made fragment of datagram `id`: IPv4 or IPv6 alike.
    fn frag(v6: bool, id: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
        if v6 {
            let mut v = v6_packet(40 + 8 + data.len(), &[], 0);
            v[6] = proto::FRAGMENT;
            let off = (offset as u16) | u16::from(more);
            let header = (17u64 << 56) | (u64::from(off) << 32) | u64::from(id);
            v[40..48].copy_from_slice(&header.to_be_bytes());
            v[48..].copy_from_slice(data);
            v
        } else {
            let mut h = Ipv4Header::new(
                data.len() as u16,
                64,
                IpNumber::UDP,
                [192, 0, 2, 1],
                [198, 51, 100, 7],
            )
            .unwrap();
            h.identification = id;
            h.dont_fragment = false;
            h.more_fragments = more;
            h.fragment_offset = etherparse::IpFragOffset::try_new((offset / 8) as u16).unwrap();
            h.header_checksum = h.calc_header_checksum();
            let mut v = h.to_bytes().to_vec();
            v.extend_from_slice(data);
            v
        }
    }

    fn reassembler(v6: bool, config: Option<ReassemblyConfig>, pool: &PacketPool) -> Reassembler {
        let c = config.unwrap_or(if v6 {
            ReassemblyConfig::ipv6()
        } else {
            ReassemblyConfig::ipv4()
        });
        Reassembler::new(c, pool.clone()).unwrap()
    }

    fn feed(r: &mut Reassembler, now: Instant, packet: &[u8]) -> FragResult {
        let info = fragment_info(packet).unwrap().expect("a fragment");
        let res = r.insert(now, &info, packet);
        assert!(r.held_bytes() <= r.config().max_bytes);
        res
    }

    fn incomplete(res: FragResult) {
        assert!(
            matches!(res, FragResult::Incomplete),
            "expected Incomplete, got {res:?}"
        );
    }

    fn dropped(res: FragResult) -> DropReason {
        match res {
            FragResult::Dropped(r) => r,
            other => panic!("expected a drop, got {other:?}"),
        }
    }

    fn fragment(v6: bool, packet: &[u8], mtu: usize, pool: &PacketPool) -> Vec<PacketBuf> {
        let mut frags = Vec::new();
        let n = if v6 {
            fragment_ipv6(packet, mtu, 0xABCD_0123, pool, &mut |b| frags.push(b)).unwrap()
        } else {
            fragment_ipv4(packet, mtu, pool, &mut |b| frags.push(b)).unwrap()
        };
        assert_eq!(n, frags.len());
        frags
    }

    fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
        for i in (1..v.len()).rev() {
            v.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }

    #[test]
    fn frag_round_trips_in_every_order() {
        let pool = pool();
        // (IPv6?, total length, MTU, IPv4 options or IPv6 extension headers?)
        let cases = [
            (false, 4000, 1500, false),
            (false, 4000, 1280, true),
            (false, 65535, 1500, false),
            (false, 65535, 1280, true),
            (true, 4000, 1500, false),
            (true, 4000, 1280, true),
            (true, 65535, 1500, true),
            (true, 65535, 1280, false),
            // The largest IPv6 packet: a 65535-byte payload behind the 40-byte header, split
            // over `lo`'s MTU as well as a small one.
            (true, 40 + 65535, 1500, true),
            (true, 40 + 65535, 65536, false),
        ];
        // Timestamp (not copied) and Router Alert (copied): later fragments keep only the latter.
        let options = [0x44, 4, 5, 0, 0x94, 4, 0, 0];
        for (v6, total, mtu, extra) in cases {
            let original = match (v6, extra) {
                (false, _) => v4_packet(total, 7, if extra { &options } else { &[] }),
                (true, true) => v6_packet(total, &HBH_ROUTING, 0),
                (true, false) => v6_packet(total, &[], 0),
            };
            let frags = fragment(v6, &original, mtu, &pool);
            for (i, f) in frags.iter().enumerate() {
                assert!(
                    f.len() <= mtu,
                    "{v6} {total} {mtu}: fragment {i} is {} bytes",
                    f.len()
                );
                let info = fragment_info(f).unwrap().unwrap();
                assert_eq!(info.more, i + 1 < frags.len());
                assert!(!info.more || info.data_len % 8 == 0);
                if !v6 && i > 0 && extra {
                    assert_eq!(info.header_len, 24, "only the copied option is repeated");
                }
            }
            let mut orders: Vec<Vec<usize>> =
                vec![(0..frags.len()).collect(), (0..frags.len()).rev().collect()];
            for seed in 0..24 {
                let mut o: Vec<usize> = (0..frags.len()).collect();
                shuffle(&mut o, &mut Rng::new(seed));
                orders.push(o);
            }
            let mut r = reassembler(v6, None, &pool);
            for order in orders {
                for (k, &i) in order.iter().enumerate() {
                    match feed(&mut r, T0, &frags[i]) {
                        FragResult::Incomplete if k + 1 < order.len() => {}
                        FragResult::Complete(done) if k + 1 == order.len() => {
                            assert_eq!(
                                done.packet.as_slice(),
                                &original[..],
                                "{v6} {total} {mtu} {extra}"
                            );
                            assert_eq!(done.fragments, frags.len());
                            if v6 {
                                etherparse::Ipv6Slice::from_slice(&done.packet).unwrap();
                                assert_eq!(done.header_len, if extra { 56 } else { 40 });
                            } else {
                                let h = Ipv4HeaderSlice::from_slice(&done.packet).unwrap();
                                assert!(!h.more_fragments());
                                assert_eq!(h.fragments_offset().value(), 0);
                                assert_eq!(usize::from(h.total_len()), total);
                                assert_eq!(
                                    h.header_checksum(),
                                    h.to_header().calc_header_checksum()
                                );
                            }
                            assert_eq!(done.next_header, 17);
                        }
                        other => panic!(
                            "{v6} {total} {mtu}: fragment {k} of {}: {other:?}",
                            order.len()
                        ),
                    }
                }
                assert_eq!((r.held_bytes(), r.stats().datagrams), (0, 0));
            }
            let s = r.stats();
            assert_eq!(s.reasm_oks, 26);
            assert_eq!(s.reasm_reqds, 26 * frags.len() as u64);
            assert_eq!(s.reasm_fails, 0);
            drop(frags);
            assert_eq!(pool.stats().in_use(), 0, "every buffer went back");
        }
    }

    #[test]
    fn frag_duplicates_are_ignored() {
        let pool = pool();
        for v6 in [false, true] {
            let original = if v6 {
                v6_packet(4000, &[], 0)
            } else {
                v4_packet(4000, 9, &[])
            };
            let frags = fragment(v6, &original, 1500, &pool);
            let mut r = reassembler(v6, None, &pool);
            for f in &frags[..frags.len() - 1] {
                incomplete(feed(&mut r, T0, f));
                incomplete(feed(&mut r, T0, f));
            }
            match feed(&mut r, T0, &frags[frags.len() - 1]) {
                FragResult::Complete(done) => assert_eq!(done.packet.as_slice(), &original[..]),
                other => panic!("{other:?}"),
            }
            assert_eq!(r.stats().duplicates, frags.len() as u64 - 1);
        }
    }

    #[test]
    fn frag_overlap_discards_the_whole_datagram_until_timeout() {
        let pool = pool();
        for v6 in [false, true] {
            let mut r = reassembler(v6, None, &pool);
            let timeout = r.config().timeout;
            // Each case: a first fragment, then one that overlaps it in some way.
            let f = |id: u16, offset, more, data: &[u8]| frag(v6, id, offset, more, data);
            // Each case: a fragment at 8..24, then one that overlaps it in some way.
            let overlapping: [(usize, bool, Vec<u8>); 4] = [
                (16, true, pattern(16, 1)), // straddles its end
                (8, true, pattern(8, 1)),   // inside it, same start
                (8, true, pattern(16, 2)),  // same range, other bytes
                (8, false, pattern(16, 1)), // same range and bytes, M clear
            ];
            for (id, (offset, more, data)) in overlapping.iter().enumerate() {
                let id = id as u16;
                incomplete(feed(&mut r, T0, &f(id, 8, true, &pattern(16, 1))));
                let res = feed(&mut r, T0, &f(id, *offset, *more, data));
                assert_eq!(dropped(res), DropReason::Overlap);
                assert_eq!(r.held_bytes(), 0);
                // The rest of the datagram, even fragments that would have completed it.
                for (offset, more, data) in [(0, true, &[1; 8]), (24, false, &[1; 8])] {
                    let res = feed(&mut r, T0, &f(id, offset, more, data));
                    assert_eq!(dropped(res), DropReason::AfterDiscard);
                }
            }
            let s = r.stats();
            assert_eq!(
                (s.overlaps, s.after_discard, s.reasm_fails, s.discarded),
                (4, 8, 4, 4)
            );
            // The records expire silently; then the key starts afresh.
            assert_eq!(r.poll_at(), Some(T0 + timeout));
            assert_eq!(r.poll(T0 + timeout, &mut |e| panic!("reported {e:?}")), 0);
            assert_eq!(r.stats().discarded, 0);
            incomplete(feed(&mut r, T0 + timeout, &f(0, 16, false, &[1; 8])));
        }
    }

    #[test]
    fn frag_timeout_reports_the_first_fragment_only_if_held() {
        let pool = pool();
        for v6 in [false, true] {
            let mut r = reassembler(v6, None, &pool);
            let timeout = r.config().timeout;
            let first = frag(v6, 1, 0, true, &pattern(1400, 3));
            incomplete(feed(&mut r, T0, &frag(v6, 2, 1400, false, &[5; 10])));
            let t1 = T0 + Duration::from_secs(1);
            incomplete(feed(&mut r, t1, &first));
            incomplete(feed(&mut r, t1, &frag(v6, 1, 2800, false, &[5; 10])));
            assert_eq!(r.poll_at(), Some(T0 + timeout));

            let mut expired = Vec::new();
            assert_eq!(
                r.poll(T0 + timeout - Duration::from_nanos(1), &mut |e| expired
                    .push(e)),
                0
            );
            assert_eq!(r.poll(T0 + timeout, &mut |e| expired.push(e)), 1);
            assert!(matches!(
                expired[0].key,
                FragKey::V4 { id: 2, .. } | FragKey::V6 { id: 2, .. }
            ));
            assert!(expired[0].first.is_none(), "no offset-0 fragment: no ICMP");
            assert_eq!(r.poll_at(), Some(t1 + timeout));
            assert_eq!(r.poll(t1 + timeout, &mut |e| expired.push(e)), 1);
            let quote = expired[1].first.as_ref().expect("offset-0 fragment held");
            let limit = if v6 { IPV6_QUOTE_MAX } else { IPV4_QUOTE_MAX };
            assert_eq!(
                quote.as_slice(),
                &first[..limit],
                "quotes the fragment as received"
            );
            let s = r.stats();
            assert_eq!(
                (s.reasm_timeout, s.reasm_fails, s.datagrams, s.held_bytes),
                (2, 2, 0, 0)
            );
            assert_eq!(r.poll_at(), None);
        }
    }

    #[test]
    fn frag_memory_bound_holds_under_a_flood() {
        let pool = pool();
        for v6 in [false, true] {
            let config = ReassemblyConfig {
                max_bytes: 100 * 1024,
                max_datagrams: 200,
                max_fragments: 16,
                ..ReassemblyConfig::ipv4()
            };
            let mut r = reassembler(v6, Some(config), &pool);
            let mut rng = Rng::new(99);
            for n in 0..2000u64 {
                let id = rng.below(300) as u16;
                let offset = rng.below(64) as usize * 8;
                let len = (1 + rng.below(150) as usize) * 8;
                let _ = feed(
                    &mut r,
                    T0 + Duration::from_millis(n),
                    &frag(v6, id, offset, true, &pattern(len, 0)),
                );
                assert!(r.held_bytes() <= config.max_bytes);
                assert!(r.stats().datagrams + r.stats().discarded <= config.max_datagrams);
            }
            let s = r.stats();
            assert!(s.memory_limit > 0, "{s:?}");
            assert!(s.held_bytes_high_water <= config.max_bytes);
            // Everything held is in the pool's count, and goes back with the reassembler.
            assert_eq!(pool.stats().in_use(), s.held_bytes / 2048);
            r.poll(Instant::MAX, &mut |_| {});
            assert_eq!((r.held_bytes(), pool.stats().in_use()), (0, 0));
        }
    }

    #[test]
    fn frag_limits_on_fragments_and_datagrams() {
        let pool = pool();
        for v6 in [false, true] {
            let config = ReassemblyConfig {
                max_datagrams: 2,
                max_fragments: 4,
                ..ReassemblyConfig::ipv4()
            };
            let mut r = reassembler(v6, Some(config), &pool);
            for i in 0..4 {
                incomplete(feed(&mut r, T0, &frag(v6, 1, i * 16, true, &[0; 8])));
            }
            assert_eq!(
                dropped(feed(&mut r, T0, &frag(v6, 1, 100 * 8, true, &[0; 8]))),
                DropReason::TooManyFragments
            );
            assert_eq!(
                dropped(feed(&mut r, T0, &frag(v6, 1, 8, true, &[0; 8]))),
                DropReason::AfterDiscard
            );
            incomplete(feed(&mut r, T0, &frag(v6, 2, 8, true, &[0; 8])));
            // Both slots taken, one by a discarded record: that one gives way.
            incomplete(feed(&mut r, T0, &frag(v6, 3, 8, true, &[0; 8])));
            assert_eq!(
                dropped(feed(&mut r, T0, &frag(v6, 4, 8, true, &[0; 8]))),
                DropReason::TooManyDatagrams
            );
            let s = r.stats();
            assert_eq!(
                (s.too_many_fragments, s.too_many_datagrams, s.datagrams),
                (1, 1, 2)
            );
        }
    }

    #[test]
    fn frag_bad_fragments_are_dropped_with_their_reason() {
        let pool = pool();
        for v6 in [false, true] {
            let mut r = reassembler(v6, None, &pool);
            assert_eq!(
                dropped(feed(&mut r, T0, &frag(v6, 1, 0, true, &[0; 12]))),
                DropReason::NotMultipleOf8
            );
            assert_eq!(
                dropped(feed(&mut r, T0, &frag(v6, 1, 0, true, &[]))),
                DropReason::Malformed
            );
            assert_eq!(
                dropped(feed(&mut r, T0, &frag(v6, 1, 65528, false, &[0; 16]))),
                DropReason::TooBig
            );
            assert_eq!(r.stats().datagrams, 0, "no state for refused fragments");
            // Past a known end, and a second last fragment that disagrees.
            incomplete(feed(&mut r, T0, &frag(v6, 2, 16, false, &[0; 8])));
            assert_eq!(
                dropped(feed(&mut r, T0, &frag(v6, 2, 24, true, &[0; 8]))),
                DropReason::BeyondLast
            );
            incomplete(feed(&mut r, T0, &frag(v6, 3, 16, false, &[0; 8])));
            assert_eq!(
                dropped(feed(&mut r, T0, &frag(v6, 3, 32, false, &[0; 8]))),
                DropReason::BeyondLast
            );
            incomplete(feed(&mut r, T0, &frag(v6, 4, 32, true, &[0; 8])));
            assert_eq!(
                dropped(feed(&mut r, T0, &frag(v6, 4, 8, false, &[0; 8]))),
                DropReason::BeyondLast
            );
            // An info that does not fit its packet.
            let p = frag(v6, 5, 8, true, &[0; 8]);
            let mut info = fragment_info(&p).unwrap().unwrap();
            info.data_len += 1;
            assert_eq!(dropped(r.insert(T0, &info, &p)), DropReason::Malformed);
            let s = r.stats();
            assert_eq!(
                (s.not_multiple_of_8, s.too_big, s.beyond_last, s.malformed),
                (1, 1, 3, 2)
            );
        }
    }

    #[test]
    fn frag_atomic_fragment_is_returned_at_once() {
        let pool = pool();
        let mut r = reassembler(true, None, &pool);
        let p = frag(true, 1, 0, false, &pattern(100, 0));
        match feed(&mut r, T0, &p) {
            FragResult::Complete(done) => {
                let mut expected = v6_packet(140, &[], 0);
                expected[40..].copy_from_slice(&pattern(100, 0));
                assert_eq!(
                    done.packet.as_slice(),
                    &expected[..],
                    "Fragment header removed"
                );
                assert_eq!((done.header_len, done.fragments), (40, 1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((r.stats().reasm_oks, r.stats().datagrams), (1, 0));
        // IPv4 has no atomic fragments: offset 0 and MF clear is simply not a fragment.
        assert_eq!(ipv4_fragment_info(&v4_packet(100, 1, &[])), Ok(None));
        assert_eq!(
            ipv6_fragment_info(&v6_packet(100, &HBH_ROUTING, 0)),
            Ok(None)
        );
    }

    #[test]
    fn frag_pool_exhaustion_is_a_drop() {
        let tiny = PacketPool::new(PoolConfig::single(1920, 2)).unwrap();
        for v6 in [false, true] {
            let mut r = reassembler(v6, None, &tiny);
            incomplete(feed(&mut r, T0, &frag(v6, 1, 0, true, &[0; 8])));
            incomplete(feed(&mut r, T0, &frag(v6, 1, 16, false, &[0; 8])));
            assert_eq!(
                dropped(feed(&mut r, T0, &frag(v6, 1, 8, true, &[0; 8]))),
                DropReason::NoBuffer
            );
            assert_eq!(r.stats().no_buffer, 1);
            r.poll(Instant::MAX, &mut |_| {});
        }
    }

    #[test]
    fn frag_egress_errors() {
        let pool = pool();
        let mut sink = |_: PacketBuf| panic!("nothing is sent");
        let mut df = v4_packet(2000, 1, &[]);
        df[6] |= 0x40;
        assert_eq!(
            fragment_ipv4(&df, 1500, &pool, &mut sink),
            Err(FragError::DontFragment { mtu: 1500 })
        );
        let p4 = v4_packet(2000, 1, &[]);
        assert_eq!(
            fragment_ipv4(&p4, 67, &pool, &mut sink),
            Err(FragError::MtuTooSmall { mtu: 67, min: 68 })
        );
        let p6 = v6_packet(2000, &[], 0);
        assert_eq!(
            fragment_ipv6(&p6, 1279, 1, &pool, &mut sink),
            Err(FragError::MtuTooSmall {
                mtu: 1279,
                min: 1280
            })
        );
        let already = frag(true, 1, 0, true, &pattern(1500, 0));
        assert!(matches!(
            fragment_ipv6(&already, 1280, 1, &pool, &mut sink),
            Err(FragError::Invalid(_))
        ));
        assert!(matches!(
            fragment_ipv4(&p4[..1999], 1500, &pool, &mut sink),
            Err(FragError::Invalid(FragInfoError::Truncated { .. }))
        ));
        // The smallest MTU still works: 8 bytes of data per IPv4 fragment with options.
        let mut n = 0;
        let with_options = v4_packet(
            200,
            2,
            &[
                0x94, 4, 0, 0, 0x44, 36, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        );
        fragment_ipv4(&with_options, 68, &pool, &mut |b| {
            assert!(b.len() <= 68);
            n += 1;
        })
        .unwrap();
        assert!(n > 1);
        // A packet that fits is sent as one unchanged copy.
        let mut copies = Vec::new();
        assert_eq!(
            fragment_ipv4(&df, 2000, &pool, &mut |b| copies.push(b)),
            Ok(1)
        );
        assert_eq!(
            fragment_ipv6(&p6, 2000, 1, &pool, &mut |b| copies.push(b)),
            Ok(1)
        );
        assert_eq!(
            (copies[0].as_slice(), copies[1].as_slice()),
            (&df[..], &p6[..])
        );
    }

    #[test]
    fn frag_refragmenting_a_fragment_keeps_offsets_and_mf() {
        let pool = pool();
        let original = v4_packet(6000, 3, &[]);
        let mut r = reassembler(false, None, &pool);
        let mut done = None;
        for big in fragment(false, &original, 4000, &pool) {
            for small in fragment(false, &big, 1500, &pool) {
                if let FragResult::Complete(d) = feed(&mut r, T0, &small) {
                    done = Some(d);
                }
            }
        }
        assert_eq!(done.expect("complete").packet.as_slice(), &original[..]);
    }

    #[test]
    fn frag_info_never_panics_on_prefixes_or_corruption() {
        let pool = pool();
        let samples = [
            fragment(false, &v4_packet(3000, 5, &[0x94, 4, 0, 0]), 1500, &pool)
                .remove(1)
                .to_vec(),
            fragment(true, &v6_packet(3000, &HBH_ROUTING, 0), 1500, &pool)
                .remove(0)
                .to_vec(),
            frag(true, 9, 8, true, &[7; 8]),
        ];
        let mut r4 = reassembler(false, None, &pool);
        let mut r6 = reassembler(true, None, &pool);
        for sample in &samples {
            assert!(fragment_info(sample).unwrap().is_some());
            for len in 0..sample.len() {
                assert!(
                    fragment_info(&sample[..len]).is_err(),
                    "prefix of {len} bytes accepted"
                );
                assert!(fragment_ipv4(&sample[..len], 1280, &pool, &mut |_| {}).is_err());
                assert!(fragment_ipv6(&sample[..len], 1280, 1, &pool, &mut |_| {}).is_err());
            }
            let mut rng = Rng::new(sample.len() as u64);
            for _ in 0..2000 {
                let mut p = sample.to_vec();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(p.len().min(80) as u64) as usize;
                    p[at] ^= 1 << rng.below(8);
                }
                let _ = fragment_ipv4(&p, 1280, &pool, &mut |_| {});
                let _ = fragment_ipv6(&p, 1280, 1, &pool, &mut |_| {});
                if let Ok(Some(info)) = fragment_info(&p) {
                    let r = if info.key.is_v6() { &mut r6 } else { &mut r4 };
                    let _ = r.insert(T0, &info, &p);
                    // A hand-made info must not make it panic either.
                    let mut bad = info;
                    bad.next_header_at = rng.below(70) as usize;
                    bad.header_len = rng.below(70) as usize;
                    bad.unfragmentable_len = rng.below(70) as usize;
                    let _ = r.insert(T0, &bad, &p);
                }
            }
        }
    }

    #[test]
    fn frag_bad_configs_are_rejected() {
        let pool = pool();
        let base = ReassemblyConfig::ipv4();
        for (c, e) in [
            (
                ReassemblyConfig {
                    max_datagrams: 0,
                    ..base
                },
                ReassemblyConfigError::Zero,
            ),
            (
                ReassemblyConfig {
                    max_fragments: 0,
                    ..base
                },
                ReassemblyConfigError::Zero,
            ),
            (
                ReassemblyConfig {
                    max_fragments: 8193,
                    max_datagrams: 1,
                    ..base
                },
                ReassemblyConfigError::TooLarge,
            ),
            (
                ReassemblyConfig {
                    max_datagrams: usize::MAX,
                    ..base
                },
                ReassemblyConfigError::TooLarge,
            ),
        ] {
            assert_eq!(Reassembler::new(c, pool.clone()).unwrap_err(), e);
        }
    }
}
