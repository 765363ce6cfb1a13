package io.vhostd.slave;

import io.vhostd.journal.JournalConfig;
import io.vhostd.journal.JournalRecovery;
import io.vhostd.journal.QueueConfig;
import io.vhostd.journal.SessionJournal;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.vhost.backend.VhostUserBackend;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * One controller served by this slave (SPDK's split: the controller is long-lived, a session is one vhost-user
 * connection). Accepts on the listening socket the master handed over; one session at a time (vhost-user-blk has one
 * front-end); a second connection while a session runs is refused.
 */
final class SlaveController {
    private static final System.Logger LOG = System.getLogger(SlaveController.class.getName());

    /** A VirtNvme queue pair of this controller and its two eventfds. */
    record Qpair(VirtNvmeQueuePair qp, int sqEventFd, int cqEventFd) {}

    private final ControlMessage.AddController spec;
    private final int listenFd;
    /** Re-attached at the published positions when a prepared controller is committed ({@link #commitQueuePairs}). */
    private List<Qpair> qpairs;

    private final ControllerAgent agent;
    private final MasterLink master;
    private final Thread acceptor;
    private volatile BlkDevice session;
    /** The connection of {@link #session} (open while session is non-null: the backend closes it after ending it). */
    private volatile int sessionFd = -1;

    private volatile boolean closed;
    /** The session journal region (issue #4), mapped, or null (no journal: nothing recorded, nothing adoptable). */
    private final MemorySegment journalRegion;

    private SessionJournal journal;

    /** How long {@link #release()} waits for the session thread to finish the message it is handling. */
    static final long RELEASE_TIMEOUT_MS = 5_000;

    /** Wakes the session thread's poll so that it sees {@link #stopSession} (issue #4 rolling upgrade). */
    private final int sessionWakeFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);

    private volatile boolean stopSession;
    /** Completes when the current session thread has returned; null before the first session. */
    private volatile CompletableFuture<Void> sessionThreadDone;

    SlaveController(ControlMessage.AddController spec, int[] fds, MemorySegment arena, MasterLink master) {
        this(spec, fds, arena, master, null);
    }

    /**
     * @param journalRegion the controller's session journal ({@link ControlMessage.ControllerJournal}), or null
     */
    SlaveController(
            ControlMessage.AddController spec,
            int[] fds,
            MemorySegment arena,
            MasterLink master,
            MemorySegment journalRegion) {
        if (fds.length != 1 + 2 * spec.numQueues() || spec.qpairs().size() != spec.numQueues()) {
            throw new IllegalArgumentException("add_controller " + spec.name() + ": expected "
                    + (1 + 2 * spec.numQueues()) + " fds and " + spec.numQueues() + " queue pairs, got " + fds.length
                    + " and " + spec.qpairs().size());
        }
        if (spec.numQueues() < 1 || spec.numQueues() > 64 || spec.maxSegments() < 3 || spec.maxSegments() > 1024) {
            throw new IllegalArgumentException("add_controller " + spec.name() + ": bad queue/segment counts");
        }
        this.spec = spec;
        this.master = master;
        this.listenFd = fds[0];
        List<Qpair> list = new ArrayList<>();
        for (int q = 0; q < spec.numQueues(); q++) {
            ControlMessage.QpairRef ref = spec.qpairs().get(q);
            // peer input: the queue pair must lie inside the arena
            if (ref.arenaOffsetBytes() < 0
                    || ref.lengthBytes() <= 0
                    || ref.arenaOffsetBytes() > arena.byteSize() - ref.lengthBytes()) {
                throw new IllegalArgumentException(
                        "add_controller " + spec.name() + ": qpair " + q + " outside the arena");
            }
            VirtNvmeQueuePair qp = VirtNvmeQueuePair.attach(arena.asSlice(ref.arenaOffsetBytes(), ref.lengthBytes()));
            list.add(new Qpair(qp, fds[1 + 2 * q], fds[2 + 2 * q]));
        }
        this.qpairs = List.copyOf(list);
        this.arena = arena;
        byte[] serial = Arrays.copyOf(spec.serial().getBytes(StandardCharsets.US_ASCII), 20);
        this.agent = new ControllerAgent(
                spec.name(),
                spec.nsid(),
                spec.capacityBytes(),
                spec.blockSizeBytes(),
                spec.readOnly(),
                serial,
                spec.numQueues(),
                spec.maxSegments());
        this.acceptor =
                Thread.ofPlatform().name("accept-" + spec.name()).daemon(true).unstarted(this::acceptLoop);
        this.journalRegion = journalRegion;
    }

    /**
     * Opens the journal for a new session (no adoption): recovery of a region nobody is writing, then the writer.
     * A region the master formatted recovers empty.
     */
    private void openJournal() {
        if (journalRegion == null || journal != null) {
            return;
        }
        try {
            JournalConfig config = JournalRecovery.readConfig(journalRegion);
            if (config.queues().stream().anyMatch(QueueConfig::started)) {
                // a session that nobody continues: record nothing into it (the master formats a fresh region)
                LOG.log(
                        System.Logger.Level.WARNING,
                        spec.name() + ": journal holds a started session; sessions are not journaled");
                return;
            }
            journal = SessionJournal.open(
                    journalRegion, JournalRecovery.recover(journalRegion, (q, v, committed, pending) -> committed));
            agent.journal(journal);
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, spec.name() + ": journal unusable: " + e.getMessage());
        }
    }

    /**
     * Continues the session a dead slave served (issue #4): recovers the journal (reading used->idx from guest
     * memory for an interrupted batch), rebuilds the back-end from it and the fds the master held, resubmits the
     * requests in flight and serves the connection. Call before {@link #start()}.
     *
     * @param fds what {@link ControlMessage.AdoptSession} carried, in its order; taken (closed on failure)
     * @throws RuntimeException if the session cannot be continued (a packed ring, a journal that does not recover)
     */
    void adopt(ControlMessage.AdoptSession adopt, int[] fds) {
        adopt(adopt, fds, List.of());
    }

    /**
     * {@link #adopt(ControlMessage.AdoptSession, int[])} in a rolling upgrade (issue #4): the requests in {@code
     * carried} still have commands at the device, submitted by the previous slave; they are taken over (their
     * completions are published here) instead of resubmitted. Each must be in flight in the journal.
     *
     * @param carried what the previous slave left in flight, per queue ({@link ControlMessage.CarryOver}); peer input
     */
    void adopt(ControlMessage.AdoptSession adopt, int[] fds, List<ControlMessage.CarriedQueue> carried) {
        Map<String, Integer> byName = new HashMap<>();
        for (int i = 0; i < fds.length && i < adopt.fds().size(); i++) {
            ControlMessage.AdoptedFd f = adopt.fds().get(i);
            Integer previous = byName.put(f.what() + "/" + f.index(), fds[i]);
            if (previous != null) {
                Unistd.close(previous);
            }
        }
        for (int i = adopt.fds().size(); i < fds.length; i++) {
            Unistd.close(fds[i]);
        }
        adopting = true;
        long t0 = System.nanoTime();
        try {
            agent.expectHandover();
            startAgent();
            if (journalRegion == null) {
                throw new IllegalStateException("no journal to adopt the session from");
            }
            Integer connection = byName.remove("connection/0");
            if (connection == null) {
                throw new IllegalStateException("no connection fd to adopt");
            }
            Adoption adoption;
            long tRecovered;
            try {
                adoption = Adoption.recover(journalRegion, byName);
                tRecovered = System.nanoTime();
            } catch (RuntimeException e) {
                Unistd.close(connection);
                throw e;
            }
            for (int fd : adoption.unusedFds()) {
                Unistd.close(fd);
            }
            try {
                journal = SessionJournal.open(journalRegion, adoption.recovered());
            } catch (RuntimeException e) {
                Unistd.close(connection);
                adoption.closeSessionFds();
                throw e;
            }
            agent.journal(journal);
            long tOpened = System.nanoTime();
            BlkDevice device = new BlkDevice(this, master, journal);
            Map<Integer, ControlMessage.CarriedQueue> carriedByQueue = new HashMap<>();
            Map<Integer, int[]> replay;
            try {
                replay = withoutCarried(adoption.replayHeads(), carried, carriedByQueue);
            } catch (RuntimeException e) {
                Unistd.close(connection);
                adoption.closeSessionFds();
                throw e;
            }
            int replayed = 0;
            for (int[] heads : replay.values()) {
                replayed += heads.length;
            }
            int carriedCount = adoption.replayCount() - replayed;
            String recoveredState = adoption.describe();
            // the device consumes its copies queue by queue as the queues start
            device.restoring(new HashMap<>(adoption.replayHeads()), carriedByQueue);
            session = device;
            sessionFd = connection;
            // the guest's cache mode (VIRTIO_BLK_F_CONFIG_WCE): QEMU does not write it again, the journal has it
            Boolean writeback = adoption.recovered().config().writeback();
            if (writeback != null) {
                agent.writeback(writeback);
            }
            // restore owns the connection and the session's fds from here, and closes them if it fails
            VhostUserBackend backend = VhostUserBackend.restore(connection, device, spec.name(), adoption.state());
            long tRestored = System.nanoTime();
            long tookNs;
            try {
                tookNs = device.startRestoredQueues();
            } catch (RuntimeException e) {
                // the connection and the session's fds are the back-end's now
                backend.logDeferred();
                backend.close();
                throw e;
            }
            long tBack = System.nanoTime();
            // every started queue is on the data path: the guest is served from when it took them
            resumedNs = tookNs;
            adopting = false;
            if (writeback != null) {
                // restoring the features may have applied §5.2.5.2's initial write-through: the guest's choice wins
                agent.writeback(writeback);
            }
            byName.clear();
            backend.logDeferred();
            LOG.log(
                    System.Logger.Level.INFO,
                    spec.name() + ": session adopted, " + replayed + " request(s) resubmitted, " + carriedCount
                            + " taken over in flight (" + recoveredState + "); steps (us): recovery "
                            + (tRecovered - t0) / 1_000 + ", journal " + (tOpened - tRecovered) / 1_000
                            + ", back-end restore " + (resumedNs - tOpened) / 1_000 + " (" + backend.restoreSteps()
                            + ", hand-off " + (resumedNs - tRestored) / 1_000 + " (picked up +"
                            + (agent.startPickedNs() - tRestored) / 1_000 + "); this thread back +"
                            + (tBack - resumedNs) / 1_000 + "), adoption started at "
                            + t0 + " ns");
            startSessionThread(backend, connection, device);
            reportState(device);
        } catch (RuntimeException e) {
            adopting = false;
            session = null;
            byName.values().forEach(Unistd::close);
            throw e;
        }
    }

    /**
     * The journal's requests in flight per queue minus those {@code carried} over (still at the device), in fetch
     * order; fills {@code carriedByQueue}.
     *
     * @throws IllegalStateException if a carried request is not in flight in the journal, or named twice
     */
    private static Map<Integer, int[]> withoutCarried(
            Map<Integer, int[]> inflight,
            List<ControlMessage.CarriedQueue> carried,
            Map<Integer, ControlMessage.CarriedQueue> carriedByQueue) {
        for (ControlMessage.CarriedQueue q : carried) {
            if (carriedByQueue.put(q.index(), q) != null) {
                throw new IllegalStateException("carry-over names queue " + q.index() + " twice");
            }
            if (!inflight.containsKey(q.index()) && !q.heads().isEmpty()) {
                throw new IllegalStateException("carry-over for queue " + q.index() + ", which is not started");
            }
        }
        Map<Integer, int[]> out = new HashMap<>();
        for (Map.Entry<Integer, int[]> e : inflight.entrySet()) {
            ControlMessage.CarriedQueue q = carriedByQueue.get(e.getKey());
            java.util.Set<Integer> heads = new java.util.HashSet<>(q == null ? List.of() : q.heads());
            int[] rest = java.util.Arrays.stream(e.getValue())
                    .filter(h -> !heads.contains(h))
                    .toArray();
            if (q != null && (heads.size() != q.heads().size() || e.getValue().length - rest.length != heads.size())) {
                throw new IllegalStateException("queue " + e.getKey() + ": carried requests " + q.heads()
                        + " are not all in flight in the journal");
            }
            out.put(e.getKey(), rest);
        }
        return out;
    }

    /** The master's arena, in which {@link #qpairs} lie. */
    private final MemorySegment arena;

    /**
     * Rolling upgrade, prepare phase (issue #4, control-channel.md "Rolling upgrade"): starts the data-path thread
     * (idle: no queue runs) while the old slave still serves, so that the commit does not wait for a thread start.
     */
    void prepare() {
        startAgent();
    }

    /**
     * Rolling upgrade, commit phase: attaches again to every queue pair at the SQ tail and CQ head published now (the
     * old slave kept submitting and consuming after {@link #prepare}; it has stopped since). Before the session is
     * adopted and before {@link #start()}.
     */
    void commitQueuePairs() {
        List<Qpair> list = new ArrayList<>();
        for (int q = 0; q < qpairs.size(); q++) {
            ControlMessage.QpairRef ref = spec.qpairs().get(q);
            Qpair old = qpairs.get(q);
            VirtNvmeQueuePair qp = VirtNvmeQueuePair.attach(arena.asSlice(ref.arenaOffsetBytes(), ref.lengthBytes()));
            list.add(new Qpair(qp, old.sqEventFd(), old.cqEventFd()));
        }
        qpairs = List.copyOf(list);
    }

    private boolean agentStarted;

    /**
     * While {@link #adopt} restores the session (issue #4): state reports are left out (one goes when it is done) and
     * so are custody messages for the session's fds (the master sent them from its custody), so that the guest does
     * not wait for them.
     */
    private volatile boolean adopting;

    /** When the adopted session's queues were back on the data path (System.nanoTime), 0 before. */
    private long resumedNs;

    /** When {@link #adopt} put the session's queues back on the data path (CLOCK_MONOTONIC ns), 0 if it did not. */
    long resumedNs() {
        return resumedNs;
    }

    private void startAgent() {
        if (!agentStarted) {
            agentStarted = true;
            agent.start();
        }
    }

    void start() {
        startAgent();
        acceptor.start();
        master.send(new ControlMessage.ControllerListening(spec.name()));
    }

    ControlMessage.AddController spec() {
        return spec;
    }

    ControllerAgent agent() {
        return agent;
    }

    Qpair qpair(int index) {
        return qpairs.get(index);
    }

    private void acceptLoop() {
        // started by the control loop: not at its raised priority
        io.vhostd.shm.linux.Priority.niceCurrentThread(0);
        while (!closed) {
            if (!awaitNoSession()) {
                return;
            }
            int revents = Poll.poll(listenFd, Poll.POLLIN, 500);
            if (closed) {
                return;
            }
            if ((revents & Poll.POLLIN) == 0) {
                continue;
            }
            int fd;
            try {
                fd = Socket.accept(listenFd);
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, spec.name() + ": accept: " + e.getMessage());
                continue;
            }
            if (fd < 0) {
                continue;
            }
            startSession(fd);
        }
    }

    /**
     * vhost-user-blk has one front-end: while a session runs, a new connection waits in the listen backlog (as with
     * qemu-storage-daemon) instead of being refused, so a front-end that connects just as the previous one leaves is
     * served. Returns false when the controller closed.
     */
    private synchronized boolean awaitNoSession() {
        while (session != null && !closed) {
            try {
                wait(1_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
        }
        return !closed;
    }

    private void startSession(int fd) {
        openJournal();
        BlkDevice device = new BlkDevice(this, master, journal);
        session = device;
        sessionFd = fd;
        custody("connection", 0, fd);
        LOG.log(System.Logger.Level.INFO, spec.name() + ": front-end connected");
        reportState(device);
        VhostUserBackend backend;
        try {
            backend = new VhostUserBackend(fd, device, spec.name());
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, spec.name() + ": session failed: " + e.getMessage(), e);
            device.disconnected();
            return;
        }
        startSessionThread(backend, fd, device);
    }

    private void startSessionThread(VhostUserBackend backend, int connectionFd, BlkDevice device) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        sessionThreadDone = done;
        Thread.ofPlatform().name("vhost-" + spec.name()).daemon(true).start(() -> {
            io.vhostd.shm.linux.Priority.niceCurrentThread(0);
            try {
                serve(backend, connectionFd);
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.ERROR, spec.name() + ": session failed: " + e.getMessage(), e);
                device.disconnected();
            } finally {
                done.complete(null);
            }
        });
    }

    /**
     * The session thread: handles the front-end's messages one at a time until the front-end leaves (then the
     * back-end is closed, as {@link VhostUserBackend#run()} does) or a release asks it to stop (issue #4 rolling
     * upgrade: then it returns between two messages and leaves the back-end as it is, not closed: the session
     * continues in another slave, and whatever QEMU sends next waits in the socket for it).
     */
    private void serve(VhostUserBackend backend, int connectionFd) {
        try (Poll.PollSet set = new Poll.PollSet(2)) {
            set.set(0, connectionFd, Poll.POLLIN);
            set.set(1, sessionWakeFd, Poll.POLLIN);
            set.size(2);
            while (true) {
                if (stopSession) {
                    return;
                }
                set.poll(-1);
                if (stopSession) {
                    return;
                }
                if (set.revents(0) == 0) {
                    continue;
                }
                boolean open;
                try {
                    open = backend.handleOneMessage();
                } catch (RuntimeException e) {
                    LOG.log(System.Logger.Level.ERROR, spec.name() + ": connection failed", e);
                    open = false;
                }
                if (!open) {
                    LOG.log(System.Logger.Level.INFO, spec.name() + ": front-end closed the connection");
                    backend.close();
                    return;
                }
            }
        }
    }

    /**
     * What {@link #release()} reports: CLOCK_MONOTONIC times (System.nanoTime on Linux), the requests drained (0 unless
     * there were too many to carry) and the requests left in flight for the next slave, per started queue.
     */
    record Released(
            long stoppedFetchingNs, long releasedNs, int drainedRequests, List<ControlMessage.CarriedQueue> carried) {}

    /**
     * The most VirtNvme commands a release hands over in flight: their report (a few bytes of JSON each) must fit one
     * control message ({@link io.vhostd.shm.control.ControlChannel#MAX_MESSAGE_BYTES}); beyond, the release drains.
     */
    static final int MAX_CARRIED_COMMANDS = 2048;

    /**
     * Why this controller cannot be handed to another slave without a disconnect now (issue #4 rolling upgrade), or
     * null if it can: no session, or a session whose negotiated state and every started queue are in the journal.
     */
    String releaseRefusal() {
        BlkDevice device = session;
        return device == null ? null : device.handoverRefusal();
    }

    /**
     * Gives the controller up (control-channel.md "Rolling upgrade", step 2): stops accepting, stops reading the
     * vhost-user connection between two messages, stops fetching and consuming completions, reports the requests
     * whose commands are still at the device (or, if there are too many, waits for them), then stops the data-path
     * thread. Nothing is recorded in the journal and nothing is released to the master: the session continues in
     * another slave from the journal, the master's fds and the reported requests.
     * Control thread only; the controller is unusable afterwards.
     *
     * @throws IllegalStateException if the session thread does not stop within {@link #RELEASE_TIMEOUT_MS}
     */
    Released release() {
        synchronized (this) {
            closed = true;
            notifyAll();
        }
        try {
            // the acceptor sees closed within one poll period (it never accepts after that)
            acceptor.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while stopping the acceptor");
        }
        CompletableFuture<Void> sessionDone = sessionThreadDone;
        if (sessionDone != null) {
            stopSession = true;
            // wakes the session thread's poll; it returns before or after the message it is handling
            Eventfd.eventfd_write(sessionWakeFd, 1);
            try {
                sessionDone.get(RELEASE_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            } catch (TimeoutException e) {
                throw new IllegalStateException("the session thread did not stop within " + RELEASE_TIMEOUT_MS + " ms");
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while stopping the session");
            } catch (ExecutionException e) {
                throw new IllegalStateException(e.getCause());
            }
        }
        long stoppedNs = System.nanoTime();
        List<ControlMessage.CarriedQueue> carried = agent.handOverQueues(MAX_CARRIED_COMMANDS);
        int drained = 0;
        if (carried == null) {
            // too many commands at the device to report in one control message: wait for them instead
            drained = agent.releaseQueues();
            carried = List.of();
        }
        long releasedNs = System.nanoTime();
        return new Released(stoppedNs, releasedNs, drained, carried);
    }

    /**
     * After {@link #release()} and its answer (issue #4: the guest waits until the next slave runs, so the answer goes
     * out first): ends the data-path thread, which no longer touches any queue, and closes this process's copies of
     * the listening socket and eventfds (the master holds them and hands them to the next slave).
     */
    void closeReleased() {
        agent.close();
        Unistd.close(listenFd);
        for (Qpair q : qpairs) {
            Unistd.close(q.sqEventFd());
            Unistd.close(q.cqEventFd());
        }
    }

    synchronized void sessionEnded(BlkDevice device) {
        if (session == device) {
            // released before the acceptor may take the next connection: its custody message must come after this
            // release on the channel, or the master would close its copy of the new connection (issue #4)
            releaseCustody("connection", 0);
            session = null;
            sessionFd = -1;
            notifyAll();
            LOG.log(System.Logger.Level.INFO, spec.name() + ": front-end disconnected");
            reportState(null);
        }
    }

    /**
     * The session fds this slave holds and the master keeps a copy of (control-channel.md rule 3): "what/index" → fd.
     * A restarted master gets them again ({@link #rejoin}).
     */
    private final Map<String, Integer> heldFds = new java.util.concurrent.ConcurrentHashMap<>();

    void custody(String what, int index, int fd) {
        // tracked either way: a restarted master gets every session fd back from here (rejoin)
        heldFds.put(what + "/" + index, fd);
        if (adopting) {
            // the adopted session's fds came from the master's custody under these keys: it holds them already, and
            // sending each back (a control message with an fd) would only lengthen the pause (issue #4)
            return;
        }
        try {
            master.send(new ControlMessage.Custody(spec.name(), what, index), fd);
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, spec.name() + ": fd custody of " + what + ": " + e.getMessage());
        }
    }

    void releaseCustody(String what, int index) {
        heldFds.remove(what + "/" + index);
        try {
            master.send(new ControlMessage.CustodyRelease(spec.name(), what, index));
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.DEBUG, spec.name() + ": custody release: " + e.getMessage());
        }
    }

    /**
     * Issue #4 master restart (control-channel.md "Master restart"): describes this controller to a restarted master
     * over {@code link} — {@code rejoin_controller} with the listening socket, the queue pairs' eventfds, the journal
     * and the stats region, then a {@code custody} per session fd and a {@code register_region} per guest memory
     * region of the session (their acks are not waited for: the control loop that delivers them is the caller).
     *
     * @param journal the journal memfd and its length, or null
     * @param stats the stats memfd and its length, or null
     */
    void rejoin(MasterLink link, SharedFd journal, SharedFd stats) {
        List<Integer> fds = new ArrayList<>();
        fds.add(listenFd);
        for (Qpair q : qpairs) {
            fds.add(q.sqEventFd());
            fds.add(q.cqEventFd());
        }
        if (journal == null) {
            throw new IllegalStateException(spec.name() + ": no journal to hand back");
        }
        fds.add(journal.fd());
        if (stats != null) {
            fds.add(stats.fd());
        }
        link.send(
                new ControlMessage.RejoinController(
                        spec.name(),
                        spec.bdev(),
                        spec.nsid(),
                        spec.numQueues(),
                        spec.maxSegments(),
                        spec.qpairs(),
                        journal.lengthBytes(),
                        stats == null ? 0 : stats.lengthBytes()),
                fds.stream().mapToInt(Integer::intValue).toArray());
        for (Map.Entry<String, Integer> e : heldFds.entrySet()) {
            int slash = e.getKey().lastIndexOf('/');
            link.send(
                    new ControlMessage.Custody(
                            spec.name(),
                            e.getKey().substring(0, slash),
                            Integer.parseInt(e.getKey().substring(slash + 1))),
                    e.getValue());
        }
        BlkDevice device = session;
        if (device != null) {
            for (io.vhostd.vhost.virtio.GuestMemoryRegion r : device.registeredMemory()) {
                long id = link.nextRequestId();
                link.send(
                        new ControlMessage.RegisterRegion(id, spec.name(), r.regionId(), r.sizeBytes(), r.mmapOffset()),
                        r.fd());
            }
        }
    }

    /** An fd the slave maps and its length (journal, stats region) for {@link #rejoin}. */
    record SharedFd(int fd, long lengthBytes) {}

    /**
     * Issue #4 master restart: the restarted master took the controller back and resumed its queue pairs at {@code
     * resume}; resubmits what the dead master fetched and never completed (virtnvme.md §10.2).
     *
     * @return the commands resubmitted
     */
    int masterRestarted(ControlMessage.ControllerResume resume) {
        int[] sqHeads = new int[spec.numQueues()];
        boolean[] known = new boolean[spec.numQueues()];
        for (ControlMessage.QpairResume q : resume.queues()) {
            // peer input: an index out of range is ignored (that queue pair resubmits nothing)
            if (q.index() >= 0 && q.index() < sqHeads.length) {
                sqHeads[q.index()] = q.sqHead();
                known[q.index()] = true;
            }
        }
        return agent.masterRestarted(sqHeads, known);
    }

    /** Tells the master the session state (for vhost_get_controllers). */
    void reportState(BlkDevice device) {
        if (adopting) {
            return;
        }
        List<ControlMessage.QueueState> queues = new ArrayList<>();
        for (int i = 0; i < spec.numQueues(); i++) {
            QueueRunner q = agent.queue(i);
            queues.add(
                    q == null
                            ? new ControlMessage.QueueState(i, 0, false, 0, 0, 0)
                            : new ControlMessage.QueueState(
                                    i, q.vq.size(), true, q.vq.lastAvailIdx(), q.vq.usedIdx(), q.inflightCount));
        }
        try {
            master.send(new ControlMessage.SessionState(
                    spec.name(),
                    device != null,
                    device == null ? 0 : device.negotiatedFeatures(),
                    BlkDevice.PROTOCOL_FEATURES,
                    queues));
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.DEBUG, spec.name() + ": state report: " + e.getMessage());
        }
    }

    /**
     * {@link ControlMessage.RemoveController}: stops accepting, ends the session if one runs (shuts its connection
     * down, so the backend sees end of stream and ends the session as on a disconnect) and waits up to {@code
     * timeoutMs} for it to end, then {@link #close()}s. Not on the control channel's reader thread: ending a session
     * waits for the master's acks, which that thread delivers.
     *
     * @throws IllegalStateException if the session did not end in time (the controller is closed anyway)
     */
    void remove(long timeoutMs) {
        boolean ended;
        synchronized (this) {
            closed = true;
            notifyAll();
            // the backend closes the connection only after sessionEnded (this lock) cleared session: the fd is ours
            if (session != null && sessionFd >= 0) {
                Socket.shutdown(sessionFd, Socket.SHUT_RDWR);
            }
            long deadlineNs = System.nanoTime() + timeoutMs * 1_000_000L;
            while (session != null && System.nanoTime() < deadlineNs) {
                try {
                    wait(Math.max(1, (deadlineNs - System.nanoTime()) / 1_000_000L));
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
            ended = session == null;
        }
        close();
        if (!ended) {
            throw new IllegalStateException(spec.name() + ": session did not end within " + timeoutMs + " ms");
        }
    }

    synchronized void close() {
        closed = true;
        notifyAll();
        agent.close();
        Unistd.close(listenFd);
    }
}
