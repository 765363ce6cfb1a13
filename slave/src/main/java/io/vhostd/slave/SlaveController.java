package io.vhostd.slave;

import io.vhostd.journal.JournalConfig;
import io.vhostd.journal.JournalRecovery;
import io.vhostd.journal.QueueConfig;
import io.vhostd.journal.SessionJournal;
import io.vhostd.shm.control.ControlMessage;
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
    private final List<Qpair> qpairs;
    private final ControllerAgent agent;
    private final MasterLink master;
    private final Thread acceptor;
    private volatile BlkDevice session;
    private volatile boolean closed;
    /** The session journal region (issue #4), mapped, or null (no journal: nothing recorded, nothing adoptable). */
    private final MemorySegment journalRegion;

    private SessionJournal journal;

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
        try {
            startAgent();
            if (journalRegion == null) {
                throw new IllegalStateException("no journal to adopt the session from");
            }
            Integer connection = byName.remove("connection/0");
            if (connection == null) {
                throw new IllegalStateException("no connection fd to adopt");
            }
            Adoption adoption;
            try {
                adoption = Adoption.recover(journalRegion, byName);
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
            BlkDevice device = new BlkDevice(this, master, journal);
            int replayed = adoption.replayCount();
            String recoveredState = adoption.describe();
            // the device consumes its copy queue by queue as the queues start
            device.restoring(new HashMap<>(adoption.replayHeads()));
            session = device;
            // restore owns the connection and the session's fds from here, and closes them if it fails
            VhostUserBackend backend = VhostUserBackend.restore(connection, device, spec.name(), adoption.state());
            byName.clear();
            LOG.log(
                    System.Logger.Level.INFO,
                    spec.name() + ": session adopted, " + replayed + " request(s) resubmitted (" + recoveredState
                            + ")");
            Thread.ofPlatform().name("vhost-" + spec.name()).daemon(true).start(() -> {
                try {
                    backend.run();
                } catch (RuntimeException e) {
                    LOG.log(System.Logger.Level.ERROR, spec.name() + ": session failed: " + e.getMessage(), e);
                    device.disconnected();
                }
            });
        } catch (RuntimeException e) {
            session = null;
            byName.values().forEach(Unistd::close);
            throw e;
        }
    }

    private boolean agentStarted;

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
        custody("connection", 0, fd);
        LOG.log(System.Logger.Level.INFO, spec.name() + ": front-end connected");
        reportState(device);
        Thread.ofPlatform().name("vhost-" + spec.name()).daemon(true).start(() -> {
            try {
                new VhostUserBackend(fd, device, spec.name()).run();
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.ERROR, spec.name() + ": session failed: " + e.getMessage(), e);
                device.disconnected();
            }
        });
    }

    synchronized void sessionEnded(BlkDevice device) {
        if (session == device) {
            // released before the acceptor may take the next connection: its custody message must come after this
            // release on the channel, or the master would close its copy of the new connection (issue #4)
            releaseCustody("connection", 0);
            session = null;
            notifyAll();
            LOG.log(System.Logger.Level.INFO, spec.name() + ": front-end disconnected");
            reportState(null);
        }
    }

    void custody(String what, int index, int fd) {
        try {
            master.send(new ControlMessage.Custody(spec.name(), what, index), fd);
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, spec.name() + ": fd custody of " + what + ": " + e.getMessage());
        }
    }

    void releaseCustody(String what, int index) {
        try {
            master.send(new ControlMessage.CustodyRelease(spec.name(), what, index));
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.DEBUG, spec.name() + ": custody release: " + e.getMessage());
        }
    }

    /** Tells the master the session state (for vhost_get_controllers). */
    void reportState(BlkDevice device) {
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

    synchronized void close() {
        closed = true;
        notifyAll();
        agent.close();
        Unistd.close(listenFd);
    }
}
