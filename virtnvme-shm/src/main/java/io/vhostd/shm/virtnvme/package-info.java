/**
 * The VirtNvme queue pair (DESIGN §2, normative layout in {@code virtnvme-shm/spec/virtnvme.md}): a shared-memory SQ
 * and CQ through which the <em>slave</em> process (the submitter, our restartable process role) sends 64-byte
 * commands to the <em>master</em> process (the executor), which runs them with io_uring against the bdev and posts
 * 16-byte completions. Pure Java over a {@link java.lang.foreign.MemorySegment}: no native calls; the callers own the
 * mapping and the two eventfds.
 */
package io.vhostd.shm.virtnvme;
