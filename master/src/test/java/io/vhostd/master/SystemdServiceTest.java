package io.vhostd.master;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.shm.linux.SdNotify;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link SystemdService} against a real {@code SOCK_DGRAM} socket playing systemd's notification socket: what each
 * step of the master's life sends, and the watchdog's keep-alives following {@link Master#healthProblem}.
 */
@Timeout(10)
class SystemdServiceTest {
    @TempDir
    Path dir;

    private int systemd = -1;
    private String notifySocket;
    private final AtomicReference<String> problem = new AtomicReference<>();

    @BeforeEach
    void bindNotifySocket() {
        notifySocket = dir.resolve("notify").toString();
        systemd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_DGRAM | Socket.SOCK_CLOEXEC | Socket.SOCK_NONBLOCK, 0);
        Socket.bind(systemd, notifySocket);
    }

    @AfterEach
    void closeNotifySocket() {
        Unistd.close(systemd);
    }

    private SystemdService service(long watchdogUsec) {
        return new SystemdService(new SdNotify(notifySocket), watchdogUsec, problem::get);
    }

    /** The next datagram, or null when none is queued (every send above is synchronous, so none will come). */
    private String received() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(SdNotify.MAX_MESSAGE_BYTES);
            Socket.Received r = Socket.recvmsg(systemd, buf, buf.byteSize(), 0);
            if (r.bytes() < 0) {
                return null;
            }
            return new String(buf.asSlice(0, r.bytes()).toArray(JAVA_BYTE), StandardCharsets.UTF_8);
        }
    }

    @Test
    void shouldSendStatusReadyAndStoppingWhenMasterStartsAndStops() {
        SystemdService s = service(0);
        assertTrue(s.enabled());
        s.status("starting");
        s.ready("ready: 1 controller(s), slave pid 7, rpc /run/vhostd/rpc.sock");
        s.stopping("stopping: signal");
        assertEquals("STATUS=starting", received());
        assertEquals("READY=1\nSTATUS=ready: 1 controller(s), slave pid 7, rpc /run/vhostd/rpc.sock", received());
        assertEquals("STOPPING=1\nSTATUS=stopping: signal", received());
        assertEquals(null, received());
    }

    @Test
    void shouldSendKeepAliveOnlyWhileHealthy() {
        SystemdService s = service(30_000_000);
        assertTrue(s.watchdogTick());
        assertEquals("WATCHDOG=1", received());

        problem.set("engine of bdev disk0 is not running");
        assertFalse(s.watchdogTick());
        assertEquals("STATUS=unhealthy: engine of bdev disk0 is not running; watchdog keep-alives stopped", received());
        assertFalse(s.watchdogTick());
        assertEquals(null, received(), "the same problem is reported once, and no keep-alive goes out");

        problem.set(null);
        assertTrue(s.watchdogTick());
        assertEquals("STATUS=healthy again", received());
        assertEquals("WATCHDOG=1", received());
    }

    @Test
    void shouldKeepAliveAtHalfTheWatchdogTimeout() {
        assertEquals(TimeUnit.SECONDS.toNanos(15), service(30_000_000).keepAliveIntervalNs());
        assertEquals(0, service(0).keepAliveIntervalNs());
    }

    @Test
    void shouldSendKeepAliveFromThreadWhenWatchdogStarted() throws Exception {
        // 20 ms timeout: keep-alives every 10 ms; the test waits for the first datagram with poll, not a sleep
        SystemdService s = service(20_000);
        s.startWatchdog();
        try {
            int revents = io.vhostd.shm.linux.Poll.poll(systemd, io.vhostd.shm.linux.Poll.POLLIN, 5_000);
            assertTrue((revents & io.vhostd.shm.linux.Poll.POLLIN) != 0, "no keep-alive within 5 s");
            assertEquals("WATCHDOG=1", received());
        } finally {
            s.close();
        }
    }

    @Test
    void shouldDoNothingWhenNotStartedBySystemd() {
        SystemdService s = new SystemdService(SdNotify.disabled(), 0, problem::get);
        assertFalse(s.enabled());
        s.status("starting");
        s.ready("ready");
        assertFalse(s.watchdogTick());
        s.startWatchdog();
        s.stopping("stopping");
        assertEquals(null, received());
    }

    @Test
    void shouldKeepRunningWhenNotifySocketVanished() {
        SystemdService s = new SystemdService(new SdNotify(dir.resolve("gone").toString()), 0, problem::get);
        s.ready("ready");
        assertFalse(s.watchdogTick(), "a failed send is reported as not sent, not thrown");
    }
}
