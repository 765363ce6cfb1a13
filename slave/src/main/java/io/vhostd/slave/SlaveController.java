package io.vhostd.slave;

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
import java.util.List;

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

    SlaveController(ControlMessage.AddController spec, int[] fds, MemorySegment arena, MasterLink master) {
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
    }

    void start() {
        agent.start();
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
        BlkDevice device = new BlkDevice(this, master);
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
            session = null;
            notifyAll();
            releaseCustody("connection", 0);
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
