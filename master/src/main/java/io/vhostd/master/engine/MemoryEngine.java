package io.vhostd.master.engine;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeOpcodes;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

/**
 * Device engine for the bdevs without a device, {@code null} and {@code malloc}: one thread per bdev executes every
 * command inline, as a copy between guest memory and the bdev's RAM ({@code malloc}; write-zeroes and discard zero the
 * range) or as zeroes into guest memory with writes dropped ({@code null}). Same checks as the other engines ({@link
 * CommandCheck}), same polling: a time-based spin budget after the last piece of work ({@code vhostd.poll.spin.us}),
 * then a sleep in poll(2) on every queue pair's submission eventfd and the engine's own. No system call per command
 * while busy and no allocation per command: guest buffers are the regions' own segments (no per-command {@code
 * MemorySegment}), zeroes are copied from one zeroed buffer.
 */
public final class MemoryEngine implements DeviceEngine {
    private static final System.Logger LOG = System.getLogger(MemoryEngine.class.getName());

    /** Most queue pairs one engine serves. */
    public static final int MAX_QPAIRS = IoUringEngine.MAX_QPAIRS;

    private static final int POLL_BATCH = 64;
    private static final int ZEROES_BYTES = 64 * 1024;

    private final Bdev bdev;
    /** The bdev's RAM ({@code malloc}), or null ({@code null}: nothing is stored). */
    private final MemorySegment memory;

    private final Arena arena = Arena.ofShared();
    private final MemorySegment zeroes;
    private final int wakeEventFd;
    private final Thread thread;
    private final ManyToOneConcurrentArrayQueue<Runnable> commands = new ManyToOneConcurrentArrayQueue<>(64);
    private final QpairBinding[] slots = new QpairBinding[MAX_QPAIRS];
    private final boolean[] posted = new boolean[MAX_QPAIRS];
    private final AtomicLong completed = new AtomicLong();
    private final long[] addresses;
    private final long[] lengths;
    private final SubmissionHandler submissionHandler = new SubmissionHandler();
    private volatile boolean running = true;

    /**
     * Starts the engine thread.
     *
     * @param bdev a {@code null} bdev (no memory) or a {@code malloc} bdev ({@link Bdev#memory()})
     * @param maxSegments most data segments of one command
     */
    public MemoryEngine(Bdev bdev, int maxSegments) {
        this.bdev = bdev;
        this.memory = bdev.memory();
        if (memory != null && memory.byteSize() < bdev.sizeBytes()) {
            throw new IllegalArgumentException("bdev " + bdev.name() + ": memory smaller than its size");
        }
        // native memory is zeroed when allocated
        this.zeroes = arena.allocate(ZEROES_BYTES, 4096);
        this.addresses = new long[maxSegments];
        this.lengths = new long[maxSegments];
        this.wakeEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        this.thread =
                Thread.ofPlatform().name("engine-" + bdev.name()).daemon(true).unstarted(this::run);
        thread.start();
    }

    @Override
    public String kind() {
        return "memory";
    }

    @Override
    public long commandsCompleted() {
        return completed.get();
    }

    @Override
    public void attach(QpairBinding binding) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        enqueue(() -> {
            for (int i = 0; i < slots.length; i++) {
                if (slots[i] == null) {
                    slots[i] = binding;
                    done.complete(null);
                    return;
                }
            }
            done.completeExceptionally(new IllegalStateException("engine " + bdev.name() + " has no free qpair slot"));
        });
        done.join();
    }

    @Override
    public void detach(int qpairId) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        enqueue(() -> {
            // commands run inline, so nothing of this queue pair is in flight between two loop iterations
            for (int i = 0; i < slots.length; i++) {
                if (slots[i] != null && slots[i].qpair().qpairId() == qpairId) {
                    publish(i);
                    slots[i] = null;
                    break;
                }
            }
            done.complete(null);
        });
        done.join();
    }

    private void enqueue(Runnable command) {
        if (!running) {
            throw new IllegalStateException("engine " + bdev.name() + " stopped");
        }
        while (!commands.offer(command)) {
            Thread.onSpinWait();
        }
        Eventfd.eventfd_write(wakeEventFd, 1);
    }

    private void run() {
        long idleSinceNs = 0;
        try (Poll.PollSet pollSet = new Poll.PollSet(1 + MAX_QPAIRS)) {
            while (running) {
                int work = commands.drain(Runnable::run);
                for (int i = 0; i < slots.length; i++) {
                    QpairBinding slot = slots[i];
                    if (slot != null) {
                        work += slot.qpair().pollSubmissions(submissionHandler.on(slot, i), POLL_BATCH);
                        publish(i);
                    }
                }
                if (work > 0) {
                    idleSinceNs = 0;
                    continue;
                }
                long now = System.nanoTime();
                if (idleSinceNs == 0) {
                    idleSinceNs = now;
                }
                if (now - idleSinceNs < IoUringEngine.SPIN_NS) {
                    Thread.onSpinWait();
                    continue;
                }
                idleSinceNs = 0;
                if (!sleep(pollSet)) {
                    continue;
                }
            }
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "engine " + bdev.name() + " died", t);
        } finally {
            Unistd.close(wakeEventFd);
        }
    }

    /** Arms every queue pair's wake-up and sleeps in poll(2); returns false if work arrived first (no sleep). */
    private boolean sleep(Poll.PollSet pollSet) {
        boolean pending = !commands.isEmpty();
        pollSet.set(0, wakeEventFd, Poll.POLLIN);
        int n = 1;
        for (QpairBinding slot : slots) {
            if (slot != null) {
                pending |= slot.qpair().armSubmissionWakeup();
                pollSet.set(n++, slot.sqEventFd(), Poll.POLLIN);
            }
        }
        if (pending || !running) {
            return false;
        }
        pollSet.size(n);
        pollSet.poll(1000);
        for (int i = 0; i < n; i++) {
            if ((pollSet.revents(i) & Poll.POLLIN) != 0 && pollSet.fd(i) != wakeEventFd) {
                // the slave's eventfd is readable, so this read does not block; only this thread reads it
                Eventfd.eventfd_read(pollSet.fd(i));
            }
        }
        if ((pollSet.revents(0) & Poll.POLLIN) != 0) {
            Eventfd.eventfd_read(wakeEventFd);
        }
        return true;
    }

    private void publish(int i) {
        if (posted[i]) {
            posted[i] = false;
            if (slots[i].qpair().publishCompletions()) {
                Eventfd.eventfd_write(slots[i].cqEventFd(), 1);
            }
        }
    }

    private void complete(int slotIndex, QpairBinding slot, int cid, int status, int result) {
        VirtNvmeQueuePair qp = slot.qpair();
        while (!qp.postCompletion(cid, status, result)) {
            // the CQ cannot be full while the slave respects depth; a stuck slave gets a publish and another chance
            if (qp.publishCompletions()) {
                Eventfd.eventfd_write(slot.cqEventFd(), 1);
            }
            Thread.onSpinWait();
        }
        posted[slotIndex] = true;
        completed.incrementAndGet();
    }

    /** Copies {@code lengthBytes} of zeroes to {@code target} at {@code offset}. */
    private void zero(MemorySegment target, long offset, long lengthBytes) {
        long done = 0;
        while (done < lengthBytes) {
            long chunk = Math.min(ZEROES_BYTES, lengthBytes - done);
            MemorySegment.copy(zeroes, 0, target, offset + done, chunk);
            done += chunk;
        }
    }

    /** Executes a checked command; returns the VirtNvme status. */
    private int execute(VirtNvmeQueuePair.Command command, RegionTable regions) {
        int opcode = command.opcode();
        long offset = command.offsetBytes();
        switch (opcode) {
            case VirtNvmeOpcodes.NVME_OPC_READ, VirtNvmeOpcodes.NVME_OPC_WRITE -> {
                boolean read = opcode == VirtNvmeOpcodes.NVME_OPC_READ;
                long pos = offset;
                int n = command.segmentCount();
                for (int i = 0; i < n; i++) {
                    // CommandCheck found each segment inside its region: the lookup cannot miss
                    MemorySegment region = regions.lookup(command.segmentRegionId(i));
                    long regionOffset = command.segmentRegionOffset(i);
                    long length = Integer.toUnsignedLong(command.segmentLengthBytes(i));
                    if (memory == null) {
                        if (read) {
                            zero(region, regionOffset, length);
                        }
                    } else if (read) {
                        MemorySegment.copy(memory, pos, region, regionOffset, length);
                    } else {
                        MemorySegment.copy(region, regionOffset, memory, pos, length);
                    }
                    pos += length;
                }
            }
            case VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES, VirtNvmeOpcodes.NVME_OPC_DATASET_MANAGEMENT -> {
                if (memory != null) {
                    zero(memory, offset, Integer.toUnsignedLong(command.lengthBytes()));
                }
            }
            default -> {
                // NVME_OPC_FLUSH: RAM has no cache to write back
            }
        }
        return VirtNvmeStatus.SUCCESS;
    }

    private final class SubmissionHandler implements VirtNvmeQueuePair.SubmissionHandler {
        private QpairBinding slot;
        private int slotIndex;

        SubmissionHandler on(QpairBinding s, int index) {
            this.slot = s;
            this.slotIndex = index;
            return this;
        }

        @Override
        public void onSubmission(VirtNvmeQueuePair.Command command) {
            int cid = command.cid();
            if (cid < 0 || cid >= slot.qpair().depth()) {
                return; // peer corruption: a CID outside the queue names no completion slot, so it cannot be answered
            }
            int status = CommandCheck.check(command, bdev, slot.nsid(), slot.regions(), addresses, lengths);
            if (status == VirtNvmeStatus.SUCCESS) {
                try {
                    status = execute(command, slot.regions());
                } catch (IllegalStateException | IndexOutOfBoundsException e) {
                    // a region unmapped under the command (the slave broke the unregister protocol): fail the
                    // command, keep serving the other queue pairs
                    LOG.log(System.Logger.Level.WARNING, "engine " + bdev.name() + ": " + e.getMessage());
                    status = VirtNvmeStatus.DATA_TRANSFER_ERROR;
                }
            }
            int opcode = command.opcode();
            // spec virtnvme.md §7: the result is the bytes transferred by READ and WRITE, 0 for every other opcode
            boolean transfers = opcode == VirtNvmeOpcodes.NVME_OPC_READ || opcode == VirtNvmeOpcodes.NVME_OPC_WRITE;
            int result = status == VirtNvmeStatus.SUCCESS && transfers ? command.lengthBytes() : 0;
            complete(slotIndex, slot, cid, status, result);
        }
    }

    @Override
    public void close() {
        if (!running) {
            return;
        }
        CompletableFuture<Void> stopped = new CompletableFuture<>();
        enqueue(() -> {
            running = false;
            stopped.complete(null);
        });
        stopped.join();
        try {
            thread.join(5_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        arena.close();
    }
}
