/**
 * The per-controller statistics region (issue #5, normative layout in {@code virtnvme-shm/spec/stats.md}): iostat
 * counters, log-linear latency histograms and a trace ring per queue, in a memfd the <em>master</em> process owns and
 * formats and the <em>slave</em> process (the data path) writes. Pure Java over a {@link
 * java.lang.foreign.MemorySegment}: no native calls. Every block has a single writer (the queue's data-path thread);
 * readers use opaque / acquire loads and never block the writer.
 */
package io.vhostd.shm.stats;
