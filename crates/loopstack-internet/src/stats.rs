//! Counters, named as Linux names them in `/proc/net/snmp` and `/proc/net/snmp6` (which in
//! turn follow the MIBs of RFC 4293 and RFC 4292), so `netstat -s` habits carry over.

use std::fmt;

/// Declares a counter struct whose fields render as one Linux MIB group: a header line of
/// names and a line of values (`/proc/net/snmp`), or one `Name value` line each
/// (`/proc/net/snmp6`).
macro_rules! counters {
    ($(#[$meta:meta])* $name:ident, $prefix:literal { $($(#[$fmeta:meta])* $field:ident => $mib:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: u64,)*
        }

        impl $name {
            /// The group's MIB prefix (`Ip`, `Icmp`, `Ip6`, `Icmp6`).
            pub const PREFIX: &'static str = $prefix;

            /// Every counter as (MIB name, value), in Linux's order.
            pub fn entries(&self) -> [(&'static str, u64); [$($mib),*].len()] {
                [$(($mib, self.$field)),*]
            }

            /// The value of the counter with MIB name `mib` (e.g. `InReceives`).
            pub fn get(&self, mib: &str) -> Option<u64> {
                self.entries().iter().find(|(m, _)| *m == mib).map(|(_, v)| *v)
            }
        }
    };
}

counters! {
    /// IPv4 counters (`Ip:` in `/proc/net/snmp`, plus `InMartians` and `InCsumErrors` that
    /// Linux keeps elsewhere).
    Ipv4Stats, "Ip" {
        /// Datagrams received from all interfaces, errors included.
        in_receives => "InReceives",
        /// Discarded for header errors: bad checksum, version, length, TTL.
        in_hdr_errors => "InHdrErrors",
        /// Discarded because the destination is not ours and forwarding is off.
        in_addr_errors => "InAddrErrors",
        /// Forwarded to another interface.
        forw_datagrams => "ForwDatagrams",
        /// Delivered to a protocol nobody handles.
        in_unknown_protos => "InUnknownProtos",
        /// Discarded for lack of resources (no buffer).
        in_discards => "InDiscards",
        /// Delivered to ICMP or transport.
        in_delivers => "InDelivers",
        /// Datagrams handed down by ICMP and transport to send.
        out_requests => "OutRequests",
        /// Discarded on the way out for lack of resources, or refused by the device.
        out_discards => "OutDiscards",
        /// Discarded for lack of a route.
        out_no_routes => "OutNoRoutes",
        /// Reassemblies abandoned on timeout.
        reasm_timeout => "ReasmTimeout",
        /// Fragments received that needed reassembly.
        reasm_reqds => "ReasmReqds",
        /// Datagrams reassembled.
        reasm_oks => "ReasmOKs",
        /// Reassembly failures (any reason).
        reasm_fails => "ReasmFails",
        /// Datagrams fragmented.
        frag_oks => "FragOKs",
        /// Datagrams that needed fragmenting but could not be (DF set).
        frag_fails => "FragFails",
        /// Fragments created.
        frag_creates => "FragCreates",
        /// Dropped for a martian source or destination (RFC 1122 3.2.1.3).
        in_martians => "InMartians",
        /// Dropped for a bad header checksum (also counted in InHdrErrors).
        in_csum_errors => "InCsumErrors",
    }
}

counters! {
    /// ICMPv4 counters (`Icmp:` in `/proc/net/snmp`).
    IcmpStats, "Icmp" {
        /// Messages received, errors included.
        in_msgs => "InMsgs",
        /// Received messages with errors (bad checksum, truncated).
        in_errors => "InErrors",
        /// Received with a bad checksum.
        in_csum_errors => "InCsumErrors",
        /// Destination Unreachable received.
        in_dest_unreachs => "InDestUnreachs",
        /// Time Exceeded received.
        in_time_excds => "InTimeExcds",
        /// Parameter Problem received.
        in_parm_probs => "InParmProbs",
        /// Echo requests received.
        in_echos => "InEchos",
        /// Echo replies received.
        in_echo_reps => "InEchoReps",
        /// Messages sent.
        out_msgs => "OutMsgs",
        /// Messages not sent for an error (no buffer, no route).
        out_errors => "OutErrors",
        /// Errors suppressed by the rate limit.
        out_rate_limit_global => "OutRateLimitGlobal",
        /// Destination Unreachable sent.
        out_dest_unreachs => "OutDestUnreachs",
        /// Time Exceeded sent.
        out_time_excds => "OutTimeExcds",
        /// Parameter Problem sent.
        out_parm_probs => "OutParmProbs",
        /// Echo requests sent.
        out_echos => "OutEchos",
        /// Echo replies sent.
        out_echo_reps => "OutEchoReps",
    }
}

counters! {
    /// IPv6 counters (`/proc/net/snmp6`).
    Ipv6Stats, "Ip6" {
        /// Datagrams received from all interfaces, errors included.
        in_receives => "Ip6InReceives",
        /// Discarded for header errors: version, length, hop limit, extension headers.
        in_hdr_errors => "Ip6InHdrErrors",
        /// Not forwarded because they exceed the outgoing link's MTU.
        in_too_big_errors => "Ip6InTooBigErrors",
        /// Discarded for lack of a route while forwarding.
        in_no_routes => "Ip6InNoRoutes",
        /// Discarded because the destination is not ours and forwarding is off.
        in_addr_errors => "Ip6InAddrErrors",
        /// Delivered to a protocol nobody handles.
        in_unknown_protos => "Ip6InUnknownProtos",
        /// Shorter than their headers say.
        in_truncated_pkts => "Ip6InTruncatedPkts",
        /// Discarded for lack of resources.
        in_discards => "Ip6InDiscards",
        /// Delivered to ICMPv6 or transport.
        in_delivers => "Ip6InDelivers",
        /// Forwarded.
        out_forw_datagrams => "Ip6OutForwDatagrams",
        /// Datagrams handed down to send.
        out_requests => "Ip6OutRequests",
        /// Discarded on the way out for lack of resources, or refused by the device.
        out_discards => "Ip6OutDiscards",
        /// Discarded for lack of a route.
        out_no_routes => "Ip6OutNoRoutes",
        /// Reassemblies abandoned on timeout.
        reasm_timeout => "Ip6ReasmTimeout",
        /// Fragments received that needed reassembly.
        reasm_reqds => "Ip6ReasmReqds",
        /// Datagrams reassembled.
        reasm_oks => "Ip6ReasmOKs",
        /// Reassembly failures.
        reasm_fails => "Ip6ReasmFails",
        /// Datagrams fragmented.
        frag_oks => "Ip6FragOKs",
        /// Datagrams that could not be fragmented.
        frag_fails => "Ip6FragFails",
        /// Fragments created.
        frag_creates => "Ip6FragCreates",
        /// Dropped for a martian source or destination (RFC 4291 2.5.3).
        in_martians => "Ip6InMartians",
    }
}

counters! {
    /// ICMPv6 counters (`/proc/net/snmp6`).
    Icmpv6Stats, "Icmp6" {
        /// Messages received, errors included.
        in_msgs => "Icmp6InMsgs",
        /// Received messages with errors.
        in_errors => "Icmp6InErrors",
        /// Received with a bad checksum.
        in_csum_errors => "Icmp6InCsumErrors",
        /// Destination Unreachable received.
        in_dest_unreachs => "Icmp6InDestUnreachs",
        /// Packet Too Big received.
        in_pkt_too_bigs => "Icmp6InPktTooBigs",
        /// Time Exceeded received.
        in_time_excds => "Icmp6InTimeExcds",
        /// Parameter Problem received.
        in_parm_problems => "Icmp6InParmProblems",
        /// Echo requests received.
        in_echos => "Icmp6InEchos",
        /// Echo replies received.
        in_echo_replies => "Icmp6InEchoReplies",
        /// Messages sent.
        out_msgs => "Icmp6OutMsgs",
        /// Messages not sent for an error.
        out_errors => "Icmp6OutErrors",
        /// Errors suppressed by the rate limit.
        out_rate_limit => "Icmp6OutRateLimit",
        /// Destination Unreachable sent.
        out_dest_unreachs => "Icmp6OutDestUnreachs",
        /// Packet Too Big sent.
        out_pkt_too_bigs => "Icmp6OutPktTooBigs",
        /// Time Exceeded sent.
        out_time_excds => "Icmp6OutTimeExcds",
        /// Parameter Problem sent.
        out_parm_problems => "Icmp6OutParmProblems",
        /// Echo requests sent.
        out_echos => "Icmp6OutEchos",
        /// Echo replies sent.
        out_echo_replies => "Icmp6OutEchoReplies",
    }
}

/// All of the internet layer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InternetStats {
    /// IPv4.
    pub ip: Ipv4Stats,
    /// ICMPv4.
    pub icmp: IcmpStats,
    /// IPv6.
    pub ip6: Ipv6Stats,
    /// ICMPv6.
    pub icmp6: Icmpv6Stats,
}

impl InternetStats {
    /// The IPv4 groups in `/proc/net/snmp` layout: for each group a line of names and a line
    /// of values, both prefixed with the group name.
    pub fn render_snmp(&self) -> String {
        let mut out = String::new();
        for (prefix, entries) in [
            (Ipv4Stats::PREFIX, &self.ip.entries()[..]),
            (IcmpStats::PREFIX, &self.icmp.entries()[..]),
        ] {
            out.push_str(prefix);
            out.push(':');
            for (name, _) in entries {
                out.push(' ');
                out.push_str(name);
            }
            out.push('\n');
            out.push_str(prefix);
            out.push(':');
            for (_, value) in entries {
                out.push_str(&format!(" {value}"));
            }
            out.push('\n');
        }
        out
    }

    /// The IPv6 groups in `/proc/net/snmp6` layout: one `Name value` line per counter, the
    /// name padded to 32 columns.
    pub fn render_snmp6(&self) -> String {
        let mut out = String::new();
        for (name, value) in self.ip6.entries().iter().chain(self.icmp6.entries().iter()) {
            out.push_str(&format!("{name:<32}{value}\n"));
        }
        out
    }
}

impl fmt::Display for InternetStats {
    /// Both renderings, IPv4 first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.render_snmp(), self.render_snmp6())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_proc_net_snmp() {
        let mut s = InternetStats::default();
        s.ip.in_receives = 5;
        s.ip.in_delivers = 4;
        s.icmp.out_echo_reps = 2;
        let text = s.render_snmp();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("Ip: InReceives InHdrErrors InAddrErrors"));
        let names: Vec<&str> = lines[0].split_whitespace().collect();
        let values: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(names.len(), values.len());
        let at = |n: &str| values[names.iter().position(|x| *x == n).unwrap()];
        assert_eq!(at("InReceives"), "5");
        assert_eq!(at("InDelivers"), "4");
        assert!(lines[2].starts_with("Icmp: InMsgs"));
        assert!(lines[3].split_whitespace().any(|v| v == "2"));
        assert_eq!(s.icmp.get("OutEchoReps"), Some(2));
        assert_eq!(s.ip.get("NoSuchCounter"), None);
    }

    #[test]
    fn renders_like_proc_net_snmp6() {
        let mut s = InternetStats::default();
        s.ip6.in_receives = 9;
        s.icmp6.in_echos = 3;
        let text = s.render_snmp6();
        assert!(
            text.contains("Ip6InReceives                   9\n"),
            "{text}"
        );
        assert!(
            text.contains("Icmp6InEchos                    3\n"),
            "{text}"
        );
        assert_eq!(
            text.lines().count(),
            s.ip6.entries().len() + s.icmp6.entries().len()
        );
    }
}
