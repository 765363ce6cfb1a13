/**
 * The master's device engine (DESIGN §1, §2): per bdev one thread that takes VirtNvme commands from every attached
 * queue pair, executes them against the bdev's fd with io_uring (or a pread/pwrite thread pool where io_uring is
 * unavailable) directly into guest memory, or inline against RAM for null and malloc bdevs ({@link
 * io.vhostd.master.engine.MemoryEngine}), and posts completions. {@link io.vhostd.master.engine.Engines} chooses. The
 * three engines share one loop (attach/detach through a control queue, completion posting and slave wake-up, the
 * spin-then-sleep poll, close, and the handling of a corrupt queue pair, {@code virtnvme-shm/spec/virtnvme.md} §9.3);
 * each adds only how a command runs and how its thread sleeps. No protocol parsing and no guest logic here: only the
 * checks that keep a command inside the bdev and inside the guest memory the slave registered.
 *
 * <p>Role: master.
 */
package io.vhostd.master.engine;
