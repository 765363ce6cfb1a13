/**
 * The VirtNvme hop benchmark (issue #3, "Performance"): one queue pair in a memfd shared by two JVMs, the parent in the
 * master's role (executor against a null device: every command completes at once, no I/O) and a child JVM in the
 * slave's role (submitter). It measures the round trip as the slave sees it, the CPU both sides use (busy, paced and
 * idle) and the bytes their hot threads allocate per I/O. Test scope: not part of the daemon. Launcher: {@link
 * io.vhostd.shm.virtnvme.bench.VirtNvmeHopBench}; summary and {@code docs/benchmarks.md}: {@link
 * io.vhostd.shm.virtnvme.bench.HopReport}; script: {@code scripts/bench-virtnvme.sh}.
 */
package io.vhostd.shm.virtnvme.bench;
