//! The trace buffer and the narrator, and the shared `lo`.
//!
//! The per-packet trace is written by whichever thread moves a packet, into a
//! [`TraceLog`]; the [`Narrator`] is the tour's own writer, which prints the buffered
//! trace between lines of narration so the two interleave without splitting a line.
//! [`SharedDevice`] lets the tour keep a hand on the stack's `lo` chain (fault counters,
//! capture) while the stack owns it. Kept apart from the tour's text because it is
//! plumbing: how output gets interleaved, not what the tour says.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use loopstack_buf::PacketBuf;
use loopstack_link::{
    Device, DeviceCapabilities, FaultInjector, Instant, LinkStats, Loopback, PcapWriter, Tracer,
    TxError,
};

// ---------------------------------------------------------------------- the trace buffer

/// Complete trace lines kept at the start of a burst, and at its end.
const TRACE_HEAD_CAP: usize = 256;
const TRACE_TAIL_CAP: usize = 256;

/// Trace lines written by any thread, waiting for the tour's thread to print them.
///
/// A burst longer than the caps keeps its first and last lines and counts the middle, so
/// a bulk transfer costs bounded memory; the capture keeps every packet anyway.
#[derive(Debug, Default)]
struct TraceLines {
    /// The line being written (the tracer may write one line in several calls).
    partial: Vec<u8>,
    head: Vec<Vec<u8>>,
    tail: VecDeque<Vec<u8>>,
    /// Lines between `head` and `tail` that were not kept.
    skipped: u64,
}

/// A cloneable handle on [`TraceLines`]: the sink the tracers write to.
#[derive(Debug, Clone, Default)]
pub(super) struct TraceLog(Arc<Mutex<TraceLines>>);

impl TraceLog {
    fn lock(&self) -> MutexGuard<'_, TraceLines> {
        // A panicking writer leaves whole lines behind it: the buffer is still usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the lines buffered so far to `sink`. A burst of more than `head + tail`
    /// lines shows its first `head` and last `tail`, with a count of those in between.
    pub(super) fn drain_to(
        &self,
        sink: &mut dyn Write,
        head: usize,
        tail: usize,
    ) -> io::Result<()> {
        let (lines, split, skipped) = {
            let mut t = self.lock();
            let mut lines = std::mem::take(&mut t.head);
            let split = lines.len();
            lines.extend(t.tail.drain(..));
            (lines, split, std::mem::take(&mut t.skipped))
        };
        if skipped == 0 && lines.len() <= head + tail {
            for line in &lines {
                sink.write_all(line)?;
            }
            return Ok(());
        }
        // The kept lines are contiguous unless some were skipped after the first `split`.
        let gap = if skipped > 0 { split } else { lines.len() };
        let front = head.min(gap);
        // Lines after the gap run contiguously to the end; never print across the gap.
        let first_back = if skipped > 0 { split.max(front) } else { front };
        let back = tail.min(lines.len() - first_back);
        for line in &lines[..front] {
            sink.write_all(line)?;
        }
        let omitted = (lines.len() - front - back) as u64 + skipped;
        writeln!(
            sink,
            "... {omitted} more trace lines (the capture has every packet) ..."
        )?;
        for line in &lines[lines.len() - back..] {
            sink.write_all(line)?;
        }
        Ok(())
    }
}

impl Write for TraceLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut t = self.lock();
        for piece in buf.split_inclusive(|&b| b == b'\n') {
            t.partial.extend_from_slice(piece);
            if !piece.ends_with(b"\n") {
                continue;
            }
            let line = std::mem::take(&mut t.partial);
            if t.tail.is_empty() && t.head.len() < TRACE_HEAD_CAP {
                t.head.push(line);
            } else {
                t.tail.push_back(line);
                if t.tail.len() > TRACE_TAIL_CAP {
                    t.tail.pop_front();
                    t.skipped += 1;
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The narration: `out` and the trace, written by the tour's thread only. Every line of
/// narration first prints the trace lines buffered before it, so packets show up right
/// after the line that caused them.
pub(super) struct Narrator<'a, O, T> {
    pub(super) out: &'a mut O,
    pub(super) trace: T,
    pub(super) log: TraceLog,
    pub(super) at_line_start: bool,
}

/// Trace lines shown per burst, unless a section asks for fewer.
pub(super) const TRACE_BURST: usize = 64;

impl<O: Write, T: Write> Narrator<'_, O, T> {
    /// Prints the buffered trace: at most `head` + `tail` lines of it.
    pub(super) fn trace_burst(&mut self, head: usize, tail: usize) -> io::Result<()> {
        self.log.drain_to(&mut self.trace, head, tail)?;
        self.trace.flush()
    }
}

impl<O: Write, T: Write> Write for Narrator<'_, O, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.at_line_start {
            self.trace_burst(TRACE_BURST, TRACE_BURST)?;
        }
        let n = self.out.write(buf)?;
        self.at_line_start = buf[..n].ends_with(b"\n");
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

// ---------------------------------------------------------------------- the shared `lo`

/// A device behind a mutex, so that the tour can reach the middleware it built (the fault
/// counters, the capture) while the stack owns the device, and take it back afterwards.
pub(super) struct SharedDevice<D> {
    /// Kept outside the lock: [`Device::name`] returns a borrow.
    pub(super) name: String,
    pub(super) dev: Arc<Mutex<D>>,
}

pub(super) fn lock<D>(dev: &Mutex<D>) -> MutexGuard<'_, D> {
    dev.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<D: Device> Device for SharedDevice<D> {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> DeviceCapabilities {
        lock(&self.dev).capabilities()
    }
    fn transmit(&mut self, now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        lock(&self.dev).transmit(now, packet)
    }
    fn receive(&mut self, now: Instant) -> Option<PacketBuf> {
        lock(&self.dev).receive(now)
    }
    fn stats(&self) -> LinkStats {
        lock(&self.dev).stats()
    }
    fn poll_at(&self) -> Option<Instant> {
        lock(&self.dev).poll_at()
    }
}

/// The stack's `lo`, outermost first: what the stack sent and received is traced, faults
/// apply, and the capture records what went onto the "wire" after them.
pub(super) type LoChain<P> = Tracer<FaultInjector<PcapWriter<Loopback, P>>, TraceLog>;
