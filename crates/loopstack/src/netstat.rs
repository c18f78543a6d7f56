//! The MIB counters `netstat -s` reads, rendered from a stack the way Linux exposes them:
//! what the tour and `loopstack tun` print.

use loopstack_socket::Stack;

/// A stack's counters in the kernel's two layouts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mib {
    /// `/proc/net/snmp`: for each group (Ip, Icmp, Tcp, TcpExt, Udp) a line of names and
    /// a line of values, both prefixed with the group.
    pub snmp: String,
    /// `/proc/net/snmp6`: `Name value` lines, only the non-zero ones, as `nstat` shows
    /// them (most IPv6 counters stay at zero on a quiet stack).
    pub snmp6: String,
}

/// The counters of every layer of `stack`, read at one moment.
pub fn mib(stack: &Stack) -> Mib {
    let ip = stack.ip().stats();
    let transport = stack.transport();
    let rendered = [
        ip.render_snmp(),
        transport.tcp.stats().render_snmp(),
        transport.udp.stats().render_snmp(),
        ip.render_snmp6(),
    ];
    let mut mib = Mib::default();
    for line in rendered.iter().flat_map(|r| r.lines()) {
        // `/proc/net/snmp` lines are `Group: ...`; `/proc/net/snmp6` ones `Name value`.
        if line.contains(':') {
            mib.snmp.push_str(line);
            mib.snmp.push('\n');
        } else if line.split_whitespace().last() != Some("0") {
            mib.snmp6.push_str(line);
            mib.snmp6.push('\n');
        }
    }
    mib
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopstack_socket::StackConfig;

    #[test]
    fn both_layouts_and_only_non_zero_ipv6_lines() {
        let mut stack = Stack::new(StackConfig::default()).unwrap();
        let now = loopstack_link::Instant::ZERO;
        stack
            .send_echo_request(now, "::1".parse().unwrap(), 7, 1, 8)
            .unwrap();
        stack.poll(now);
        let m = mib(&stack);
        for group in ["Ip: ", "Icmp: ", "Tcp: ", "TcpExt: ", "Udp: "] {
            assert_eq!(m.snmp.lines().filter(|l| l.starts_with(group)).count(), 2);
        }
        assert!(m.snmp6.contains("Icmp6OutEchoReplies"), "{}", m.snmp6);
        assert!(m.snmp6.lines().all(|l| !l.ends_with(" 0")), "{}", m.snmp6);
    }
}
