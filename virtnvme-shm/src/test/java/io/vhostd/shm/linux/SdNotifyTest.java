package io.vhostd.shm.linux;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** sd_notify(3) over FFM: the message format, the address forms, and real datagrams to a socket playing systemd. */
@Timeout(10)
class SdNotifyTest {
    @TempDir
    Path dir;

    @Test
    void shouldJoinAssignmentsWithNewlinesWhenFormatted() {
        byte[] message = SdNotify.format(SdNotify.READY, SdNotify.status("serving 2 controllers"));
        assertArrayEquals("READY=1\nSTATUS=serving 2 controllers".getBytes(StandardCharsets.UTF_8), message);
    }

    @Test
    void shouldRefuseAssignmentWhenItSpansLinesOrHasNoName() {
        assertThrows(IllegalArgumentException.class, () -> SdNotify.format("READY=1\nSTOPPING=1"));
        assertThrows(IllegalArgumentException.class, () -> SdNotify.format("ready=1"));
        assertThrows(IllegalArgumentException.class, () -> SdNotify.format("READY"));
        assertThrows(IllegalArgumentException.class, () -> SdNotify.format("=1"));
        assertThrows(IllegalArgumentException.class, SdNotify::format);
    }

    @Test
    void shouldRefuseMessageWhenLongerThanSystemdReads() {
        String big = "STATUS=" + "x".repeat(SdNotify.MAX_MESSAGE_BYTES);
        assertThrows(IllegalArgumentException.class, () -> SdNotify.format(big));
        assertEquals(SdNotify.MAX_MESSAGE_BYTES, SdNotify.format("STATUS=" + "x".repeat(4089)).length);
    }

    @Test
    void shouldFlattenAndCapStatusWhenTextHasLineBreaks() {
        assertEquals("STATUS=a b c d", SdNotify.status("a\nb\r\nc\rd"));
        assertEquals(
                SdNotify.STATUS_PREFIX.length() + SdNotify.MAX_STATUS_CHARS,
                SdNotify.status("y".repeat(5000)).length());
    }

    @Test
    void shouldMapAtSignToAbstractNamespaceWhenAddressStartsWithIt() {
        assertEquals("\0vhostd/notify", SdNotify.sunPath("@vhostd/notify"));
        assertEquals("/run/systemd/notify", SdNotify.sunPath("/run/systemd/notify"));
        assertEquals(null, SdNotify.sunPath(null));
        assertEquals(null, SdNotify.sunPath(""));
        assertThrows(IllegalArgumentException.class, () -> SdNotify.sunPath("@"));
        assertThrows(IllegalArgumentException.class, () -> SdNotify.sunPath("run/notify"));
        assertThrows(IllegalArgumentException.class, () -> SdNotify.sunPath("vsock:2:1234"));
        assertThrows(IllegalArgumentException.class, () -> SdNotify.sunPath("/" + "p".repeat(107)));
    }

    @Test
    void shouldReportWatchdogOnlyWhenUsecPositiveAndPidMatches() {
        assertEquals(30_000_000L, SdNotify.watchdogUsec("30000000", null, 42));
        assertEquals(30_000_000L, SdNotify.watchdogUsec("30000000", "42", 42));
        assertEquals(0, SdNotify.watchdogUsec("30000000", "43", 42));
        assertEquals(0, SdNotify.watchdogUsec("30000000", "pid", 42));
        assertEquals(0, SdNotify.watchdogUsec(null, null, 42));
        assertEquals(0, SdNotify.watchdogUsec("", null, 42));
        assertEquals(0, SdNotify.watchdogUsec("0", null, 42));
        assertEquals(0, SdNotify.watchdogUsec("-5", null, 42));
        assertEquals(0, SdNotify.watchdogUsec("30s", null, 42));
    }

    @Test
    void shouldSendNothingWhenNoNotifySocket() {
        SdNotify notify = SdNotify.disabled();
        assertFalse(notify.enabled());
        assertFalse(notify.notify(SdNotify.READY));
        // a malformed assignment is refused even when nothing would be sent
        assertThrows(IllegalArgumentException.class, () -> notify.notify("READY"));
    }

    @Test
    void shouldDeliverReadyWhenSystemdListensOnPath() {
        String path = dir.resolve("notify").toString();
        int systemd = bindDatagram(path);
        try {
            SdNotify notify = new SdNotify(path);
            assertTrue(notify.enabled());
            assertTrue(notify.notify(SdNotify.READY, SdNotify.status("ready")));
            assertEquals("READY=1\nSTATUS=ready", receive(systemd));
            assertTrue(notify.notify(SdNotify.WATCHDOG));
            assertEquals("WATCHDOG=1", receive(systemd));
        } finally {
            Unistd.close(systemd);
        }
    }

    @Test
    void shouldDeliverStoppingWhenSystemdListensOnAbstractSocket() {
        String name = "vhostd-test-notify-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
        int systemd = bindDatagram("\0" + name);
        try {
            assertTrue(new SdNotify("@" + name).notify(SdNotify.STOPPING));
            assertEquals("STOPPING=1", receive(systemd));
        } finally {
            Unistd.close(systemd);
        }
    }

    @Test
    void shouldThrowErrnoWhenNothingListens() {
        SdNotify notify = new SdNotify(dir.resolve("nobody").toString());
        ErrnoException e = assertThrows(ErrnoException.class, () -> notify.notify(SdNotify.READY));
        assertEquals(Errno.ENOENT, e.errno());
    }

    /** A SOCK_DGRAM socket bound at {@code path}, as systemd's notification socket is. */
    static int bindDatagram(String path) {
        int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_DGRAM | Socket.SOCK_CLOEXEC, 0);
        Socket.bind(fd, path);
        return fd;
    }

    /** One datagram, blocking. */
    static String receive(int fd) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(SdNotify.MAX_MESSAGE_BYTES);
            Socket.Received r = Socket.recvmsg(fd, buf, buf.byteSize(), 0);
            return new String(
                    buf.asSlice(0, r.bytes()).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
        }
    }
}
