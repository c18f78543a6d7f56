//! The TCP header on the wire (RFC 9293 3.1): reading it from bytes, writing it back.
//!
//! ```text
//!     0                   1                   2                   3
//!     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |          Source Port          |       Destination Port        |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                        Sequence Number                        |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                    Acknowledgment Number                      |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |  Data |       |C|E|U|A|P|R|S|F|                               |
//!    | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//!    |       |       |R|E|G|K|H|T|N|N|                               |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |           Checksum            |         Urgent Pointer        |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                           [Options]                           |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The options are read by hand rather than with etherparse's TCP header type, because a TCP
//! must skip options it does not know (RFC 9293 3.1, "must be prepared to handle an illegal
//! option length"), and Linux's SYN carries five kinds of them.

use std::fmt;

use thiserror::Error;

use super::seq::SeqNum;

/// The fixed part of the header.
pub const HEADER_LEN: usize = 20;
/// The longest header: data offset 15 words.
pub const MAX_HEADER_LEN: usize = 60;

/// Control bits.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// No more data from sender.
    pub const FIN: Flags = Flags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: Flags = Flags(0x02);
    /// Reset the connection.
    pub const RST: Flags = Flags(0x04);
    /// Push function.
    pub const PSH: Flags = Flags(0x08);
    /// The acknowledgment field is significant.
    pub const ACK: Flags = Flags(0x10);
    /// The urgent pointer is significant.
    pub const URG: Flags = Flags(0x20);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Debug for Flags {
    /// tcpdump's letters: `S`, `F`, `R`, `P`, `.` for ACK, `U`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letters = [
            (Flags::SYN, 'S'),
            (Flags::FIN, 'F'),
            (Flags::RST, 'R'),
            (Flags::PSH, 'P'),
            (Flags::URG, 'U'),
            (Flags::ACK, '.'),
        ];
        for (flag, c) in letters {
            if self.contains(flag) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// The options this TCP understands. Others are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Maximum segment size (kind 2, RFC 9293 3.7.1), only meaningful on a SYN.
    pub mss: Option<u16>,
    /// Window scale shift (kind 3, RFC 7323 2), only on a SYN. Values above 14 are read as 14
    /// (RFC 7323 2.3).
    pub window_scale: Option<u8>,
    /// SACK permitted (kind 4, RFC 2018). Read, never acted on: we do not offer SACK, so the
    /// peer never sends SACK blocks.
    pub sack_permitted: bool,
    /// Timestamps (kind 8, RFC 7323 3): `(TSval, TSecr)`. Used for round-trip measurement
    /// (RFC 7323 4) and PAWS (5) when both SYNs carry it.
    pub timestamps: Option<(u32, u32)>,
}

impl Options {
    /// Bytes these options take when written (padded to a 4-byte boundary).
    pub fn wire_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 4; // NOP + 3-byte option
        }
        if self.timestamps.is_some() {
            n += 12; // NOP, NOP + 10-byte option
        }
        n
    }
}

/// A parsed header, or one about to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number of the first octet (or of the SYN).
    pub seq: SeqNum,
    /// Next sequence number expected, when [`Flags::ACK`] is set.
    pub ack: SeqNum,
    /// Control bits.
    pub flags: Flags,
    /// The window field as sent: unscaled.
    pub window: u16,
    /// Urgent pointer (read and ignored: RFC 6093 advises against urgent data).
    pub urgent: u16,
    /// The options understood.
    pub options: Options,
}

/// Why a header could not be read.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer than 20 bytes.
    #[error("segment of {0} bytes is shorter than a TCP header")]
    Truncated(usize),
    /// Data offset below 5 words or beyond the segment.
    #[error("bad data offset {offset} in a {len}-byte segment")]
    BadDataOffset {
        /// The data offset, in bytes.
        offset: usize,
        /// Bytes present.
        len: usize,
    },
}

impl Header {
    /// A reset: `<SEQ=seq><CTL=RST>`, or `<SEQ=seq><ACK=ack><CTL=RST,ACK>` when `ack` is
    /// given (RFC 9293 3.10.7.1 uses both forms).
    pub fn reset(src_port: u16, dst_port: u16, seq: SeqNum, ack: Option<SeqNum>) -> Header {
        Header {
            src_port,
            dst_port,
            seq,
            ack: ack.unwrap_or_default(),
            flags: if ack.is_some() {
                Flags::RST | Flags::ACK
            } else {
                Flags::RST
            },
            ..Header::default()
        }
    }

    /// Reads a header from the start of `b`; returns it and its length (where the payload
    /// starts). An option with an impossible length ends option parsing, as in Linux: the
    /// segment itself is still good.
    pub fn parse(b: &[u8]) -> Result<(Header, usize), WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated(b.len()));
        }
        let offset = usize::from(b[12] >> 4) * 4;
        if offset < HEADER_LEN || offset > b.len() {
            return Err(WireError::BadDataOffset {
                offset,
                len: b.len(),
            });
        }
        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let header = Header {
            src_port: be16(0),
            dst_port: be16(2),
            seq: SeqNum(be32(4)),
            ack: SeqNum(be32(8)),
            // The CWR and ECE bits (RFC 3168) are read and dropped: we do not negotiate ECN.
            flags: Flags(b[13] & 0x3f),
            window: be16(14),
            urgent: be16(18),
            options: parse_options(&b[HEADER_LEN..offset]),
        };
        Ok((header, offset))
    }

    /// Bytes this header takes when written.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.options.wire_len()
    }

    /// Writes the header into `out` (at least [`wire_len`](Self::wire_len) bytes), with a
    /// zero checksum for the caller to fill in.
    pub fn write(&self, out: &mut [u8]) {
        let len = self.wire_len();
        out[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        out[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        out[4..8].copy_from_slice(&self.seq.0.to_be_bytes());
        out[8..12].copy_from_slice(&self.ack.0.to_be_bytes());
        out[12] = ((len / 4) as u8) << 4;
        out[13] = self.flags.0;
        out[14..16].copy_from_slice(&self.window.to_be_bytes());
        out[16..18].copy_from_slice(&[0, 0]);
        out[18..20].copy_from_slice(&self.urgent.to_be_bytes());
        let mut at = HEADER_LEN;
        if let Some(mss) = self.options.mss {
            out[at..at + 2].copy_from_slice(&[2, 4]);
            out[at + 2..at + 4].copy_from_slice(&mss.to_be_bytes());
            at += 4;
        }
        if let Some(shift) = self.options.window_scale {
            // A NOP first keeps the next option 4-byte aligned, as every stack does.
            out[at..at + 4].copy_from_slice(&[1, 3, 3, shift]);
            at += 4;
        }
        if let Some((tsval, tsecr)) = self.options.timestamps {
            // RFC 7323 appendix A's layout: two NOPs, then the 10-byte option, aligned.
            out[at..at + 4].copy_from_slice(&[1, 1, 8, 10]);
            out[at + 4..at + 8].copy_from_slice(&tsval.to_be_bytes());
            out[at + 8..at + 12].copy_from_slice(&tsecr.to_be_bytes());
        }
    }
}

/// Reads the options area. Kinds: 0 end, 1 no-op, 2 MSS, 3 window scale, 4 SACK permitted,
/// 8 timestamps; anything else is skipped by its length byte.
fn parse_options(mut b: &[u8]) -> Options {
    let mut o = Options::default();
    while let Some(&kind) = b.first() {
        match kind {
            0 => break,
            1 => {
                b = &b[1..];
                continue;
            }
            _ => {}
        }
        let Some(&len) = b.get(1) else { break };
        let len = usize::from(len);
        if len < 2 || len > b.len() {
            break;
        }
        let body = &b[2..len];
        match (kind, body.len()) {
            (2, 2) => o.mss = Some(u16::from_be_bytes([body[0], body[1]])),
            // RFC 7323 2.3: a shift above 14 is used as 14.
            (3, 1) => o.window_scale = Some(body[0].min(14)),
            (4, 0) => o.sack_permitted = true,
            (8, 8) => {
                let v =
                    |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
                o.timestamps = Some((v(0), v(4)));
            }
            // A known kind with the wrong length, or an unknown kind: skip it.
            _ => {}
        }
        b = &b[len..];
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN as Linux 6.x sends it: MSS, SACK permitted, timestamps, NOP, window scale 7.
    const LINUX_SYN: [u8; 40] = [
        0xc3, 0x50, 0x1f, 0x90, // ports 50000 -> 8080
        0x12, 0x34, 0x56, 0x78, // seq
        0, 0, 0, 0, // ack
        0xa0, 0x02, 0xff, 0xd7, // offset 10 words, SYN, window 65495
        0, 0, 0, 0, // checksum, urgent
        2, 4, 0xff, 0xd7, // MSS 65495
        4, 2, // SACK permitted
        8, 10, 0, 0, 0, 1, 0, 0, 0, 0, // timestamps 1, 0
        1, // NOP
        3, 3, 7, // window scale 7
    ];

    #[test]
    fn reads_a_linux_syn() {
        let (h, len) = Header::parse(&LINUX_SYN).unwrap();
        assert_eq!(len, 40);
        assert_eq!((h.src_port, h.dst_port), (50000, 8080));
        assert_eq!(h.seq, SeqNum(0x12345678));
        assert_eq!(h.flags, Flags::SYN);
        assert_eq!(h.window, 65495);
        assert_eq!(h.options.mss, Some(65495));
        assert_eq!(h.options.window_scale, Some(7));
        assert!(h.options.sack_permitted);
        assert_eq!(h.options.timestamps, Some((1, 0)));
    }

    #[test]
    fn skips_unknown_options_and_stops_at_bad_lengths() {
        let mut syn = LINUX_SYN;
        syn[24] = 99; // SACK-permitted becomes unknown kind 99, length 2: skipped
        let (h, _) = Header::parse(&syn).unwrap();
        assert!(!h.options.sack_permitted);
        assert_eq!(h.options.window_scale, Some(7), "parsing went on after it");
        syn[25] = 0; // length 0: parsing stops, the header is still good
        let (h, _) = Header::parse(&syn).unwrap();
        assert_eq!(h.options.mss, Some(65495));
        assert_eq!(h.options.window_scale, None);
        syn[25] = 200; // length beyond the options area
        assert!(Header::parse(&syn).is_ok());
    }

    #[test]
    fn clamps_window_scale_to_14() {
        let mut syn = LINUX_SYN;
        syn[39] = 15;
        assert_eq!(
            Header::parse(&syn).unwrap().0.options.window_scale,
            Some(14)
        );
    }

    #[test]
    fn rejects_truncated_and_bad_offsets() {
        assert_eq!(
            Header::parse(&LINUX_SYN[..19]),
            Err(WireError::Truncated(19))
        );
        let mut b = LINUX_SYN;
        b[12] = 0x40; // 4 words
        assert!(matches!(
            Header::parse(&b),
            Err(WireError::BadDataOffset { offset: 16, .. })
        ));
        b[12] = 0xf0; // 60 bytes, only 40 present
        assert!(Header::parse(&b).is_err());
    }

    #[test]
    fn write_then_parse_round_trips() {
        let h = Header {
            src_port: 1,
            dst_port: 2,
            seq: SeqNum(u32::MAX),
            ack: SeqNum(7),
            flags: Flags::SYN | Flags::ACK,
            window: 1234,
            urgent: 0,
            options: Options {
                mss: Some(1460),
                window_scale: Some(9),
                timestamps: Some((0xdead_beef, 7)),
                ..Options::default()
            },
        };
        let mut out = [0xffu8; MAX_HEADER_LEN];
        h.write(&mut out);
        assert_eq!(h.wire_len(), 40);
        let (back, len) = Header::parse(&out[..40]).unwrap();
        assert_eq!(len, 40);
        assert_eq!(back, h);
        assert_eq!(format!("{:?}", back.flags), "S.");
    }
}
