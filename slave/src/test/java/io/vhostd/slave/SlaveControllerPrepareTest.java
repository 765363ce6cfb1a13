package io.vhostd.slave;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.vhostd.shm.control.ControlChannel;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A controller prepared for a rolling upgrade (issue #4, control-channel.md "Rolling upgrade"): built and its
 * data-path thread started while the old slave still serves, attached to the queue pairs at the positions published
 * when it is committed.
 */
@Timeout(10)
class SlaveControllerPrepareTest {
    private static final int QUEUE_DEPTH = 16;
    private static final int MAX_SEGMENTS = 8;

    private final List<Integer> openFds = new ArrayList<>();
    private Arena arena;
    private MemorySegment qpairArena;
    private long qpairBytes;
    private MasterLink master;

    @BeforeEach
    void setUp() {
        arena = Arena.ofShared();
        qpairBytes = VirtNvmeDescriptor.lengthBytes(QUEUE_DEPTH, MAX_SEGMENTS);
        qpairArena = arena.allocate(qpairBytes, 4096);
        VirtNvmeQueuePair.format(qpairArena, 0, QUEUE_DEPTH, MAX_SEGMENTS);
        int[] link = Socket.socketpair(Socket.SOCK_SEQPACKET);
        openFds.add(link[1]);
        master = new MasterLink(new ControlChannel(link[0]));
    }

    @AfterEach
    void tearDown() {
        openFds.forEach(Unistd::close);
        arena.close();
    }

    @Test
    void shouldAttachAtPublishedPositionsWhenPreparedControllerIsCommitted() {
        int[] fds = controllerFds();
        SlaveController c = new SlaveController(spec(0, qpairBytes), fds, qpairArena, master, null);
        try {
            c.prepare();
            VirtNvmeQueuePair prepared = c.qpair(0).qp();
            // the old slave goes on submitting after the prepare: the SQ tail it published moves
            VirtNvmeDescriptor.sqTailRelease(qpairArena, 5);

            c.commitQueuePairs();

            assertEquals(0, prepared.sqTailIndex(), "the prepare's view is stale");
            assertNotSame(prepared, c.qpair(0).qp());
            assertEquals(5, c.qpair(0).qp().sqTailIndex(), "the commit attaches at the published tail");
            assertEquals(fds[1], c.qpair(0).sqEventFd(), "the eventfds stay");
            assertEquals(fds[2], c.qpair(0).cqEventFd(), "the eventfds stay");
        } finally {
            close(c, fds);
        }
    }

    @Test
    void shouldRefusePrepareWhenQueuePairLiesOutsideArena() {
        int[] fds = controllerFds();

        assertThrows(
                IllegalArgumentException.class,
                () -> new SlaveController(spec(qpairBytes, qpairBytes), fds, qpairArena, master, null));
    }

    @Test
    void shouldRefusePrepareWhenFdsDoNotMatchQueues() {
        int[] fds = controllerFds();
        int[] missing = {fds[0], fds[1]};

        assertThrows(
                IllegalArgumentException.class,
                () -> new SlaveController(spec(0, qpairBytes), missing, qpairArena, master, null));
    }

    @Test
    void shouldRefuseCommitWhenQueuePairIsNoLongerFormatted() {
        int[] fds = controllerFds();
        SlaveController c = new SlaveController(spec(0, qpairBytes), fds, qpairArena, master, null);
        try {
            c.prepare();
            // a peer wiped the region between the prepare and the commit
            qpairArena.fill((byte) 0);

            assertThrows(RuntimeException.class, c::commitQueuePairs);
        } finally {
            close(c, fds);
        }
    }

    private static ControlMessage.AddController spec(long offsetBytes, long lengthBytes) {
        return new ControlMessage.AddController(
                "prep",
                "null0",
                1,
                1L << 30,
                512,
                false,
                "PREP",
                1,
                MAX_SEGMENTS,
                List.of(new ControlMessage.QpairRef(0, offsetBytes, lengthBytes)));
    }

    /** A stand-in listening socket (an eventfd: it is only held) and the queue pair's SQ and CQ eventfds. */
    private int[] controllerFds() {
        int[] fds = new int[3];
        for (int i = 0; i < fds.length; i++) {
            fds[i] = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
            openFds.add(fds[i]);
        }
        return fds;
    }

    /** Stops the controller; it closes the listening socket it was given (the eventfds stay the test's). */
    private void close(SlaveController c, int[] fds) {
        c.close();
        openFds.remove((Integer) fds[0]);
    }
}
