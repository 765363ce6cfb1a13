package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.shm.control.ControlChannel;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue #4 master restart, control-channel.md "Master restart": a rejoining slave's messages over a real socketpair,
 * good and malformed; every fd that is not taken is closed. And the state file.
 */
@Timeout(10)
class SlaveRejoinTest {
    private static final ControlMessage.Rejoin REJOIN = new ControlMessage.Rejoin(
            ControlMessage.PROTOCOL_VERSION, 4242, "dev", 0x00010100, 0x00010100, "slave-7", 1 << 21);

    @TempDir
    Path dir;

    private ControlChannel slave;
    private ControlChannel master;
    private final List<Integer> opened = new ArrayList<>();
    private int fdsBefore;

    @BeforeEach
    void pair() throws IOException {
        fdsBefore = openFds();
        int[] pair = Socket.socketpair(Socket.SOCK_SEQPACKET);
        slave = new ControlChannel(pair[0]);
        master = new ControlChannel(pair[1]);
    }

    @AfterEach
    void close() {
        opened.forEach(Unistd::close);
        slave.close();
        master.close();
    }

    /** An fd to send (the sender keeps its copy: closed after the test). */
    private int fd() {
        int fd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        opened.add(fd);
        return fd;
    }

    private int[] fds(int n) {
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = fd();
        }
        return out;
    }

    private static ControlMessage.RejoinController controller(String name, int numQueues, long statsBytes) {
        List<ControlMessage.QpairRef> qpairs = new ArrayList<>();
        for (int q = 0; q < numQueues; q++) {
            qpairs.add(new ControlMessage.QpairRef(q + 1, q * 4096L, 4096));
        }
        return new ControlMessage.RejoinController(name, "bdev0", 1, numQueues, 128, qpairs, 8192, statsBytes);
    }

    @Test
    void shouldCollectEveryFdWhenSlaveRejoinsInOrder() throws IOException {
        slave.send(REJOIN, fd());
        slave.send(controller("vb0", 2, 4096), fds(1 + 4 + 2));
        slave.send(new ControlMessage.SessionState("vb0", true, 0, 0, List.of()));
        slave.send(new ControlMessage.Custody("vb0", "connection", 0), fd());
        slave.send(new ControlMessage.Custody("vb0", "kick", 1), fd());
        slave.send(new ControlMessage.RegisterRegion(3, "vb0", 5, 1 << 20, 0), fd());
        slave.send(new ControlMessage.RejoinDone(List.of("vb0")));

        SlaveRejoin r = SlaveRejoin.receive(master, 5_000);
        assertEquals(REJOIN, r.hello);
        assertTrue(r.arenaFd >= 0);
        SlaveRejoin.Controller c = r.controllers.get("vb0");
        assertEquals(2, c.sqEventFds.length);
        assertTrue(c.listenFd >= 0 && c.journalFd >= 0 && c.statsFd >= 0);
        assertEquals(
                List.of("connection/0", "kick/1"),
                r.held.stream().map(h -> h.what + "/" + h.index).toList());
        assertEquals(5, r.regions.getFirst().spec.regionId());
        r.closeUntaken();
        assertEquals(fdsBefore + 2 + opened.size(), openFds(), "the received copies are closed");
    }

    @Test
    void shouldRefuseAndCloseWhenFirstMessageIsNotRejoin() throws IOException {
        slave.send(new ControlMessage.Custody("vb0", "connection", 0), fd());
        assertThrows(IllegalStateException.class, () -> SlaveRejoin.receive(master, 5_000));
        assertEquals(fdsBefore + 2 + opened.size(), openFds());
    }

    @Test
    void shouldRefuseWhenRejoinControllerCarriesTheWrongNumberOfFds() throws IOException {
        slave.send(REJOIN, fd());
        // 2 queues with a stats region need 1 + 4 + 2 fds
        slave.send(controller("vb0", 2, 4096), fds(6));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> SlaveRejoin.receive(master, 5_000));
        assertTrue(e.getMessage().contains("bad rejoin_controller"), e.getMessage());
        assertEquals(fdsBefore + 2 + opened.size(), openFds(), "the arena and the controller's fds are closed");
    }

    @Test
    void shouldRefuseWhenCustodyNamesAControllerNotRejoined() throws IOException {
        slave.send(REJOIN, fd());
        slave.send(controller("vb0", 1, 0), fds(4));
        slave.send(new ControlMessage.Custody("other", "connection", 0), fd());
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> SlaveRejoin.receive(master, 5_000));
        assertTrue(e.getMessage().contains("bad custody"), e.getMessage());
        assertEquals(fdsBefore + 2 + opened.size(), openFds());
    }

    @Test
    void shouldRefuseWhenRejoinDoneNamesOtherControllers() {
        slave.send(REJOIN, fd());
        slave.send(controller("vb0", 1, 0), fds(4));
        slave.send(new ControlMessage.RejoinDone(List.of("vb0", "vb1")));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> SlaveRejoin.receive(master, 5_000));
        assertTrue(e.getMessage().contains("rejoin_done"), e.getMessage());
    }

    @Test
    void shouldRefuseWhenSlaveIdOrArenaIsBad() {
        slave.send(new ControlMessage.Rejoin(ControlMessage.PROTOCOL_VERSION, 1, "dev", 0, 0, "../etc", 1 << 21), fd());
        assertThrows(IllegalStateException.class, () -> SlaveRejoin.receive(master, 5_000));
        slave.send(new ControlMessage.Rejoin(ControlMessage.PROTOCOL_VERSION, 1, "dev", 0, 0, "slave-1", 0), fd());
        assertThrows(IllegalStateException.class, () -> SlaveRejoin.receive(master, 5_000));
    }

    @Test
    void shouldFailWhenSlaveClosesMidway() {
        slave.send(REJOIN, fd());
        slave.send(controller("vb0", 1, 0), fds(4));
        slave.close();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> SlaveRejoin.receive(master, 5_000));
        assertTrue(e.getMessage().contains("closed"), e.getMessage());
    }

    @Test
    void shouldFailWhenSlaveStopsTalkingBeforeTheDeadline() {
        slave.send(REJOIN, fd());
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> SlaveRejoin.receive(master, 100));
        assertTrue(e.getMessage().contains("in time"), e.getMessage());
    }

    @Test
    void shouldRoundTripStateFileAndSeeThisProcessAlive() throws IOException {
        Path file = dir.resolve(SlaveRejoin.STATE_FILE);
        assertNull(SlaveRejoin.readState(file));
        long self = ProcessHandle.current().pid();
        SlaveRejoin.writeState(file, "slave-3", self);
        SlaveRejoin.State state = SlaveRejoin.readState(file);
        assertEquals(self, state.masterPid());
        assertEquals("slave-3", state.slaveId());
        assertTrue(state.masterAlive(), "written by this process");
        assertTrue(state.slaveAlive());
        assertTrue(SlaveRejoin.startTicks(self) > 0);
        SlaveRejoin.State reused = new SlaveRejoin.State(self, state.masterStartTicks() + 1, "slave-3", self, 0);
        assertTrue(!reused.masterAlive() && !reused.slaveAlive(), "another start time: a reused pid");
        assertEquals(-1, SlaveRejoin.startTicks(Integer.MAX_VALUE));
    }

    private static int openFds() throws IOException {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return (int) fds.count();
        }
    }
}
