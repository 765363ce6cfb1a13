package io.vhostd.master.engine;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeOpcodes;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * What every device engine shares: one platform thread per bdev that applies attach and detach from a control queue,
 * fetches the commands of every attached queue pair ({@code virtnvme-shm/spec/virtnvme.md} §6.4), checks them
 * ({@link CommandCheck}), posts their completions and wakes the slave (§6.5), and polls for {@link #SPIN_NS} after its
 * last piece of work before it arms every queue pair's wake-up and sleeps (§6.7). A subclass says only how a checked
 * command runs ({@link #execute}, finished later through {@link #pollDevice} when it does not run inline), what it
 * keeps per queue pair ({@link #newSlot}), and how the thread sleeps ({@link #sleep}; by default poll(2) on the
 * control eventfd and every queue pair's submission eventfd).
 *
 * <p>The slave is a peer process, so a queue pair can be corrupt (§9.3): an index more than depth away from its
 * counterpart, or a CQ that stays full because the slave has more commands outstanding than §8 allows. The engine then
 * stops using
 * that queue pair alone: it fetches nothing more from it, posts nothing more in it, lets its commands in flight
 * finish, detaches it, logs once and counts ({@link #queuePairsFailed()}); the other queue pairs go on. An SQE whose
 * CID no completion can answer (not below depth, or still in flight) is dropped, counted ({@link #commandsDropped()})
 * and logged once per queue pair.
 *
 * <p>Threading: {@link #attach}, {@link #detach} and {@link #close} may be called from any thread; everything else
 * runs on the engine thread. The subclass hooks are called on the engine thread unless their Javadoc says otherwise.
 *
 * @param <S> what the subclass keeps per attached queue pair
 */
abstract class PollingEngine<S extends PollingEngine.QueueSlot> implements DeviceEngine {
    /**
     * How long the thread keeps polling after its last piece of work before it sleeps on eventfds. Polling hides the
     * wake-up latency while a guest is busy; a short budget keeps idle CPU near zero and leaves cores to vCPUs.
     * System property {@code vhostd.poll.spin.us} (microseconds).
     */
    static final long SPIN_NS = Long.getLong("vhostd.poll.spin.us", 20) * 1000;

    /** Most SQEs fetched from one queue pair per loop iteration, so that one busy queue pair cannot starve the others. */
    static final int POLL_BATCH = 64;

    /**
     * Fault injection (tests of the master restart, issue #4): {@code -Dvhostd.fault.master.halt-after-fetches=N}
     * halts the whole master process right after its engines fetched N SQEs in all (SQ head released past them),
     * before they reach the device: the commands a restarted master cannot see, which the slave must resubmit. 0: off.
     */
    static final long FAULT_HALT_AFTER_FETCHES = Long.getLong("vhostd.fault.master.halt-after-fetches", 0);

    private static final java.util.concurrent.atomic.AtomicLong FAULT_FETCHED =
            new java.util.concurrent.atomic.AtomicLong();

    /** Longest poll(2) sleep: a lost wake-up (a peer that breaks §6.7) costs at most this. */
    private static final int POLL_TIMEOUT_MS = 1000;

    /**
     * How long a completion waits for room in a full CQ before the queue pair counts as corrupt. A slave that follows
     * §8 never lets the CQ fill, so this is only leniency for a slave that frees CIDs a moment before it releases its
     * CQ head; every other queue pair waits meanwhile.
     */
    private static final long CQ_FULL_SPIN_NS = 1_000_000;

    /** How long {@link #close()} waits for the engine thread before it gives up and leaves the thread's memory. */
    private static final long CLOSE_TIMEOUT_MS = 10_000;

    /**
     * What the engine keeps per attached queue pair; subclasses add their per-CID state. Engine thread only, except
     * {@link #released}.
     */
    static class QueueSlot {
        /** Position in the engine's slot table, stable while attached (the io_uring engine puts it in user_data). */
        final int index;

        final QpairBinding binding;
        final VirtNvmeQueuePair qp;
        /** Per CID: fetched and not yet completed. */
        final boolean[] cidInFlight;
        /** Completed when the slot has left the engine (detached, or failed and drained). */
        final CompletableFuture<Void> released = new CompletableFuture<>();

        /** Commands handed to the device ({@link #commandStarted}) and not yet back. */
        int inflight;
        /** Completions posted since the last publish. */
        boolean posted;
        /** Not served any more: fetch nothing; release once nothing is in flight. */
        boolean detaching;
        /** Corrupt (spec §9.3): post nothing more. */
        boolean failed;

        boolean droppedLogged;
        boolean deviceErrorLogged;

        QueueSlot(int index, QpairBinding binding) {
            this.index = index;
            this.binding = binding;
            this.qp = binding.qpair();
            this.cidInFlight = new boolean[qp.depth()];
        }
    }

    /** An attach or detach for the engine thread; {@code done} completes when it took effect. */
    private record ControlOp(Consumer<CompletableFuture<Void>> action, CompletableFuture<Void> done) {}

    final Bdev bdev;
    private final System.Logger log;

    /** Out arrays of {@link CommandCheck#check}: the native address and length of each data segment. */
    final long[] addresses;

    final long[] lengths;

    /** Written to wake the engine thread (control ops, finished device work, close); read by its sleep. */
    final int controlEventFd;

    private final ConcurrentLinkedQueue<ControlOp> controlOps = new ConcurrentLinkedQueue<>();
    /** Guards {@link #controlEventFdClosed}: nobody writes the control eventfd once the engine thread closed it. */
    private final Object controlEventFdLock = new Object();

    private boolean controlEventFdClosed;
    private final QueueSlot[] slots = new QueueSlot[MAX_QPAIRS];
    private final SubmissionHandler submissionHandler = new SubmissionHandler();
    private final Thread thread;
    private final AtomicBoolean closeCalled = new AtomicBoolean();
    private final AtomicLong completed = new AtomicLong();
    private final AtomicLong dropped = new AtomicLong();
    private final AtomicLong failedQueuePairs = new AtomicLong();
    private final AtomicLong deviceErrorCount = new AtomicLong();
    private volatile boolean running = true;
    /** Commands of every queue pair handed to the device and not yet back. */
    private int inflightTotal;
    /** The default {@link #sleep()}'s poll set, made on first use. */
    private Poll.PollSet pollSet;
    /** The set of serving queue pairs changed since {@link #pollSet} was built. */
    private boolean pollSetStale = true;

    /**
     * Creates the control eventfd and the (unstarted) engine thread; the subclass constructor calls {@link #start()}
     * last, once its own fields are set.
     *
     * @param maxSegments most data segments of one command
     */
    PollingEngine(Bdev bdev, int maxSegments, System.Logger log) {
        this.bdev = bdev;
        this.log = log;
        this.addresses = new long[maxSegments];
        this.lengths = new long[maxSegments];
        this.controlEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        this.thread =
                Thread.ofPlatform().name("engine-" + bdev.name()).daemon(true).unstarted(this::run);
    }

    /** Starts the engine thread. The subclass constructor calls it last. */
    final void start() {
        thread.start();
    }

    /** Closes the control eventfd of an engine whose subclass constructor failed before {@link #start()}. */
    final void abandon() {
        synchronized (controlEventFdLock) {
            controlEventFdClosed = true;
            Unistd.close(controlEventFd);
        }
    }

    // ---------------------------------------------------------------- subclass hooks

    /** A new attachment's state. Runs on the engine thread; may throw (the attach fails, the engine goes on). */
    abstract S newSlot(int index, QpairBinding binding);

    /**
     * Runs a checked command ({@link CommandCheck#check} passed; for READ and WRITE {@link #addresses} and {@link
     * #lengths} hold its segments): either {@link #complete} now, or {@link #commandStarted} now and {@link
     * #commandFinished} from {@link #pollDevice()} later.
     */
    abstract void execute(S slot, VirtNvmeQueuePair.Command command, int cid);

    /**
     * Every loop iteration, after the queue pairs were polled: submits what {@link #execute} queued and finishes what
     * the device finished.
     *
     * @return the work done, 0 for nothing
     */
    int pollDevice() {
        return 0;
    }

    /**
     * Sleeps until a queue pair's submission eventfd or the control eventfd is written (or the device has work for
     * {@link #pollDevice()}). Every serving queue pair's wake-up is armed (§6.7) and nothing was pending just before.
     * The default sleeps in poll(2) on those eventfds and drains the ones that are readable.
     */
    void sleep() {
        if (pollSetStale) {
            rebuildPollSet();
        }
        if (pollSet.poll(POLL_TIMEOUT_MS) == 0) {
            return;
        }
        for (int i = 0; i < pollSet.size(); i++) {
            if ((pollSet.revents(i) & Poll.POLLIN) != 0) {
                // readable, so this read does not block: this thread is the eventfd's only reader, and the set lists
                // each fd once (the slave's eventfds are blocking)
                Eventfd.eventfd_read(pollSet.fd(i));
            }
        }
    }

    /** The default sleep's poll set: the control eventfd and each serving queue pair's submission eventfd, once. */
    private void rebuildPollSet() {
        if (pollSet == null) {
            pollSet = new Poll.PollSet(1 + MAX_QPAIRS);
        }
        pollSet.set(0, controlEventFd, Poll.POLLIN);
        int n = 1;
        for (QueueSlot slot : slots) {
            if (slot == null || slot.detaching) {
                continue;
            }
            int fd = slot.binding.sqEventFd();
            boolean listed = false;
            for (int i = 0; i < n && !listed; i++) {
                listed = pollSet.fd(i) == fd;
            }
            if (!listed) {
                pollSet.set(n++, fd, Poll.POLLIN);
            }
        }
        pollSet.size(n);
        pollSetStale = false;
    }

    /** The queue pair stops being served (detached, or failed): fetch nothing more. Its work in flight goes on. */
    void onDetach(S slot) {}

    /** Whether nothing of this detaching slot is left outside the engine's bookkeeping, so it may be released. */
    boolean canRelease(S slot) {
        return true;
    }

    /** The slot left the engine: free its resources. */
    void onRelease(S slot) {}

    /** First thing on the engine thread. */
    void onStart() {}

    /**
     * Last thing on the engine thread, also after it failed, before the slots still attached are released: stop the
     * device side. Commands still in flight may be {@link #commandFinished finished} from here.
     */
    void onStop() {}

    /** On the thread that called {@link #close()}, once the engine thread has ended: free what that thread used. */
    void onClosed() {}

    // ---------------------------------------------------------------- for subclasses

    /** False once {@link #close()} was called or the engine thread ended. */
    final boolean running() {
        return running;
    }

    /** Commands of every queue pair handed to the device and not yet back. */
    final int inflightTotal() {
        return inflightTotal;
    }

    /** The slot at {@code index}, or null. */
    @SuppressWarnings("unchecked")
    final S slot(int index) {
        return (S) slots[index];
    }

    /** This loop iteration's device-submit time (virtnvme.md §3.1), 0 until its first submission. */
    private long submitClockNs;

    /** This loop iteration's device-complete time, 0 until its first completion. */
    private long completeClockNs;

    private long submitClockNs() {
        if (submitClockNs == 0) {
            submitClockNs = System.nanoTime();
        }
        return submitClockNs;
    }

    private long completeClockNs() {
        if (completeClockNs == 0) {
            completeClockNs = System.nanoTime();
        }
        return completeClockNs;
    }

    /** {@link #execute} handed the command to the device. */
    final void commandStarted(S slot) {
        slot.inflight++;
        inflightTotal++;
    }

    /** A command {@link #commandStarted started} came back from the device: post its completion. */
    final void commandFinished(S slot, int cid, int status, int result) {
        slot.inflight--;
        inflightTotal--;
        complete(slot, cid, status, result);
    }

    /**
     * Posts the completion of {@code cid} (spec §6.5 steps 1–4); the engine publishes it (steps 5–6) before it looks
     * for more work. Nothing is posted in a failed queue pair.
     */
    final void complete(QueueSlot slot, int cid, int status, int result) {
        slot.cidInFlight[cid] = false;
        if (slot.failed) {
            return;
        }
        // virtnvme.md §3.1: published with the CQE below (stats segments device / device_to_used)
        slot.qp.deviceCompleteNs(cid, completeClockNs());
        try {
            if (!slot.qp.postCompletion(cid, status, result) && !postWhenCqFull(slot, cid, status, result)) {
                return;
            }
        } catch (IllegalStateException e) {
            // spec §9.3: the slave's CQ head is not within depth of the CQ tail
            failQueuePair(slot, e.getMessage());
            return;
        }
        slot.posted = true;
        completed.incrementAndGet();
    }

    /**
     * The status of a command the device failed (spec §7.1): {@code UNRECOVERED_READ_ERROR} for a READ, {@code
     * WRITE_FAULT} for the commands that write (WRITE, FLUSH, WRITE_ZEROES, DATASET_MANAGEMENT), {@code
     * DATA_TRANSFER_ERROR} when the guest memory was at fault ({@code EFAULT}). Counted; logged once per queue pair.
     *
     * @param errno the failure's errno, or 0 for a short transfer
     */
    final int deviceError(QueueSlot slot, int opcode, int errno) {
        deviceErrorCount.incrementAndGet();
        int status = errno == Errno.EFAULT
                ? VirtNvmeStatus.DATA_TRANSFER_ERROR
                : opcode == VirtNvmeOpcodes.NVME_OPC_READ
                        ? VirtNvmeStatus.UNRECOVERED_READ_ERROR
                        : VirtNvmeStatus.WRITE_FAULT;
        if (!slot.deviceErrorLogged) {
            slot.deviceErrorLogged = true;
            log.log(
                    System.Logger.Level.WARNING,
                    "engine " + bdev.name() + ", queue pair " + slot.qp.qpairId() + ": "
                            + VirtNvmeOpcodes.name(opcode) + " failed ("
                            + (errno == 0 ? "short transfer" : Errno.name(errno) + ", errno " + errno) + "), answered "
                            + VirtNvmeStatus.name(status) + "; further device errors of this queue pair are counted,"
                            + " not logged");
        }
        return status;
    }

    /** Writes the control eventfd so that a sleeping engine thread wakes; nothing once the thread closed it. */
    final void wake() {
        synchronized (controlEventFdLock) {
            if (!controlEventFdClosed) {
                Eventfd.eventfd_write(controlEventFd, 1);
            }
        }
    }

    // ---------------------------------------------------------------- DeviceEngine

    @Override
    public final long commandsCompleted() {
        return completed.get();
    }

    @Override
    public final long commandsDropped() {
        return dropped.get();
    }

    @Override
    public final long queuePairsFailed() {
        return failedQueuePairs.get();
    }

    @Override
    public final long deviceErrors() {
        return deviceErrorCount.get();
    }

    @Override
    public final void attach(QpairBinding binding) {
        control(done -> {
            int free = -1;
            for (int i = slots.length - 1; i >= 0; i--) {
                if (slots[i] == null) {
                    free = i;
                } else if (slots[i].qp.qpairId() == binding.qpair().qpairId()) {
                    throw new IllegalStateException("engine " + bdev.name() + " already serves queue pair "
                            + binding.qpair().qpairId());
                }
            }
            if (free < 0) {
                throw new IllegalStateException("engine " + bdev.name() + " already serves " + MAX_QPAIRS
                        + " queue pairs (DeviceEngine.MAX_QPAIRS): detach one first");
            }
            slots[free] = newSlot(free, binding);
            pollSetStale = true;
            done.complete(null);
        });
    }

    @Override
    public final void detach(int qpairId) {
        detachAll(qpairId);
    }

    @Override
    public final void detachAll(int... qpairIds) {
        control(done -> {
            List<CompletableFuture<Void>> released = new ArrayList<>();
            for (QueueSlot slot : slots) {
                if (slot != null && java.util.Arrays.stream(qpairIds).anyMatch(id -> id == slot.qp.qpairId())) {
                    beginDetach(slot);
                    released.add(slot.released);
                }
            }
            CompletableFuture.allOf(released.toArray(CompletableFuture[]::new))
                    .whenComplete((v, e) -> done.complete(null));
        });
    }

    @Override
    public final void close() {
        if (!closeCalled.compareAndSet(false, true)) {
            return;
        }
        running = false;
        wake();
        try {
            thread.join(CLOSE_TIMEOUT_MS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (thread.isAlive()) {
            // the thread may still use the memory (and the kernel may still write into it): leave it allocated
            log.log(
                    System.Logger.Level.ERROR,
                    "engine " + bdev.name() + " did not stop within " + CLOSE_TIMEOUT_MS + " ms; its memory is kept");
            return;
        }
        onClosed();
    }

    /**
     * Tests: runs {@code task} on the engine thread between two loop iterations. An {@link Error} it throws ends the
     * thread, as an engine bug would; it comes back here in a {@link CompletionException}.
     */
    final void runOnEngineThread(Runnable task) {
        control(done -> {
            task.run();
            done.complete(null);
        });
    }

    /** Hands {@code action} to the engine thread and waits until it completed {@code done}. */
    private void control(Consumer<CompletableFuture<Void>> action) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        synchronized (controlEventFdLock) {
            // under the lock: the engine thread, as it ends, fails what is queued under the same lock, so nothing
            // queued here can be left waiting for a thread that is gone
            if (!running || controlEventFdClosed) {
                throw stopped();
            }
            controlOps.add(new ControlOp(action, done));
            Eventfd.eventfd_write(controlEventFd, 1);
        }
        try {
            done.join();
        } catch (CompletionException e) {
            if (e.getCause() instanceof IllegalStateException cause) {
                throw new IllegalStateException(cause.getMessage(), cause);
            }
            throw e;
        }
    }

    private IllegalStateException stopped() {
        return new IllegalStateException("engine " + bdev.name() + " stopped");
    }

    // ---------------------------------------------------------------- engine thread

    private void run() {
        try {
            onStart();
            long idleSinceNs = 0;
            while (running || inflightTotal > 0) {
                // virtnvme.md §3.1: one clock reading per iteration for submissions, one for completions
                submitClockNs = 0;
                completeClockNs = 0;
                int work = runControlOps();
                if (running) {
                    work += pollQueuePairs();
                }
                work += pollDevice();
                publishAndRelease();
                if (work > 0) {
                    idleSinceNs = 0;
                    continue;
                }
                long now = System.nanoTime();
                if (idleSinceNs == 0) {
                    idleSinceNs = now;
                }
                if (now - idleSinceNs < SPIN_NS) {
                    Thread.onSpinWait();
                    continue;
                }
                idleSinceNs = 0;
                if (armWakeups()) {
                    sleep();
                }
            }
        } catch (Throwable t) {
            log.log(System.Logger.Level.ERROR, "engine " + bdev.name() + " died", t);
        } finally {
            shutDown();
        }
    }

    private int runControlOps() {
        int n = 0;
        for (ControlOp op = controlOps.poll(); op != null; op = controlOps.poll()) {
            n++;
            if (!running) {
                op.done().completeExceptionally(stopped());
                continue;
            }
            try {
                op.action().accept(op.done());
            } catch (RuntimeException e) {
                op.done().completeExceptionally(e);
            } catch (Error e) {
                op.done().completeExceptionally(e);
                throw e;
            }
        }
        return n;
    }

    private int pollQueuePairs() {
        int work = 0;
        for (QueueSlot slot : slots) {
            if (slot == null || slot.detaching) {
                continue;
            }
            try {
                int fetched = slot.qp.pollSubmissions(submissionHandler.on(slot), POLL_BATCH);
                work += fetched;
                if (FAULT_HALT_AFTER_FETCHES > 0 && fetched > 0) {
                    haltOnFault(fetched);
                }
            } catch (IllegalStateException e) {
                // spec §9.3: the slave corrupted this queue pair (an SQ tail more than depth ahead of the head, or an
                // SQE that changed under the checks): stop using it, keep serving the others
                failQueuePair(slot, e.getMessage());
                work++;
            }
        }
        return work;
    }

    /** {@link #FAULT_HALT_AFTER_FETCHES}: counts, and halts the process (exit status 137, as SIGKILL) when due. */
    private static void haltOnFault(int fetched) {
        long total = FAULT_FETCHED.addAndGet(fetched);
        if (total >= FAULT_HALT_AFTER_FETCHES) {
            System.err.println("vhostd fault injection: master halts after fetching " + total + " SQEs");
            Runtime.getRuntime().halt(137);
        }
    }

    /** Before sleeping: arms every serving queue pair's wake-up (§6.7). False if work arrived meanwhile: poll on. */
    private boolean armWakeups() {
        boolean pending = false;
        for (QueueSlot slot : slots) {
            if (slot != null && !slot.detaching) {
                pending |= slot.qp.armSubmissionWakeup();
            }
        }
        return !pending && controlOps.isEmpty() && running;
    }

    private void publishAndRelease() {
        for (int i = 0; i < slots.length; i++) {
            QueueSlot slot = slots[i];
            if (slot == null) {
                continue;
            }
            if (slot.posted) {
                slot.posted = false;
                publish(slot);
            }
            if (slot.detaching && slot.inflight == 0 && canRelease(cast(slot))) {
                slots[i] = null;
                onRelease(cast(slot));
                slot.released.complete(null);
            }
        }
    }

    /** Every slot in the table was made by {@link #newSlot}: it is an {@code S}. */
    @SuppressWarnings("unchecked")
    private S cast(QueueSlot slot) {
        return (S) slot;
    }

    /** Spec §6.5 steps 5–6: wakes the slave if it sleeps and a completion passed its event index. */
    private static void publish(QueueSlot slot) {
        if (slot.qp.publishCompletions()) {
            Eventfd.eventfd_write(slot.binding.cqEventFd(), 1);
        }
    }

    /** Spec §6.5 step 1, a full CQ: publish, retry for a moment, then treat the queue pair as corrupt (§8, §9.3). */
    private boolean postWhenCqFull(QueueSlot slot, int cid, int status, int result) {
        long startNs = System.nanoTime();
        do {
            publish(slot);
            Thread.onSpinWait();
            if (slot.qp.postCompletion(cid, status, result)) {
                return true;
            }
        } while (System.nanoTime() - startNs < CQ_FULL_SPIN_NS);
        failQueuePair(
                slot,
                "CQ full for " + CQ_FULL_SPIN_NS / 1000 + " us: the slave has more than depth commands"
                        + " outstanding (spec §8)");
        return false;
    }

    /** Spec §9.3: stops using one queue pair; the others go on. Logged once per queue pair. */
    private void failQueuePair(QueueSlot slot, String reason) {
        if (slot.failed) {
            return;
        }
        slot.failed = true;
        failedQueuePairs.incrementAndGet();
        log.log(
                System.Logger.Level.WARNING,
                "engine " + bdev.name() + ", queue pair " + slot.qp.qpairId() + ": " + reason
                        + "; the queue pair is detached (spec virtnvme.md §9.3), the others are still served");
        beginDetach(slot);
    }

    private void beginDetach(QueueSlot slot) {
        if (!slot.detaching) {
            slot.detaching = true;
            pollSetStale = true;
            onDetach(cast(slot));
        }
    }

    /** Spec §9.1: an SQE no CQE can answer (its CID is not below depth, or is still in flight). */
    private void drop(QueueSlot slot, int cid) {
        dropped.incrementAndGet();
        if (!slot.droppedLogged) {
            slot.droppedLogged = true;
            log.log(
                    System.Logger.Level.WARNING,
                    "engine " + bdev.name() + ", queue pair " + slot.qp.qpairId() + ": SQE with CID " + cid
                            + (cid < slot.qp.depth() ? " already in flight" : " not below depth " + slot.qp.depth())
                            + " dropped unanswered (peer corruption); further ones of this queue pair are counted,"
                            + " not logged");
        }
    }

    /** The engine thread's end, also after a failure: nothing can wait on it or write its eventfd afterwards. */
    private void shutDown() {
        running = false;
        synchronized (controlEventFdLock) {
            if (!controlEventFdClosed) {
                controlEventFdClosed = true;
                Unistd.close(controlEventFd);
            }
        }
        for (ControlOp op = controlOps.poll(); op != null; op = controlOps.poll()) {
            op.done().completeExceptionally(stopped());
        }
        try {
            onStop();
        } catch (RuntimeException e) {
            log.log(System.Logger.Level.ERROR, "engine " + bdev.name() + ": stopping the device side failed", e);
        }
        for (int i = 0; i < slots.length; i++) {
            QueueSlot slot = slots[i];
            if (slot == null) {
                continue;
            }
            slots[i] = null;
            try {
                if (slot.posted && !slot.failed) {
                    publish(slot);
                }
                onRelease(cast(slot));
            } catch (RuntimeException e) {
                log.log(System.Logger.Level.ERROR, "engine " + bdev.name() + ": releasing a queue pair failed", e);
            }
            slot.released.complete(null);
        }
        if (pollSet != null) {
            pollSet.close();
        }
    }

    /** The one submission handler, pointed at the queue pair being polled: no allocation per poll. */
    private final class SubmissionHandler implements VirtNvmeQueuePair.SubmissionHandler {
        private QueueSlot slot;

        SubmissionHandler on(QueueSlot s) {
            this.slot = s;
            return this;
        }

        @Override
        public void onSubmission(VirtNvmeQueuePair.Command command) {
            QueueSlot s = slot;
            if (s.detaching) {
                return; // failed earlier in this batch: the rest of the batch goes with the queue pair
            }
            int cid = command.cid();
            // untrusted: a CID not below depth names no CID the slave allocated, and one still in flight would
            // complete twice; either CQE would break the flow control of spec §8, so neither is answered
            if (cid < 0 || cid >= s.cidInFlight.length || s.cidInFlight[cid]) {
                drop(s, cid);
                return;
            }
            s.cidInFlight[cid] = true;
            // virtnvme.md §3.1: this iteration submits it to the device (stats segment submit_to_device)
            s.qp.deviceSubmitNs(cid, submitClockNs());
            QpairBinding b = s.binding;
            int status = CommandCheck.check(command, bdev, b.nsid(), b.regions(), addresses, lengths);
            if (status != VirtNvmeStatus.SUCCESS) {
                complete(s, cid, status, 0);
                return;
            }
            execute(cast(s), command, cid);
        }
    }
}
