package io.vhostd.shm.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.ByteArrayOutputStream;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@link Taskstats}: the parsing of the kernel's generic netlink messages (well-formed and malformed), and, where the
 * kernel lets this process listen (CAP_NET_ADMIN, initial namespaces, CONFIG_TASKSTATS), a real multi-threaded
 * process's exit.
 */
@Timeout(30)
class TaskstatsTest {
    private static final int FAMILY = 0x1c;

    /** A netlink attribute: header, payload, padding to 4 bytes. */
    private static byte[] nla(int type, byte[] payload) {
        int len = 4 + payload.length;
        ByteBuffer b = ByteBuffer.allocate((len + 3) & ~3).order(ByteOrder.nativeOrder());
        b.putShort((short) len).putShort((short) type).put(payload);
        return b.array();
    }

    private static byte[] u32(int v) {
        return ByteBuffer.allocate(4).order(ByteOrder.nativeOrder()).putInt(v).array();
    }

    private static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            out.writeBytes(p);
        }
        return out.toByteArray();
    }

    /** A netlink message of {@code type} with a generic netlink header ({@code cmd}) and {@code attrs}. */
    private static byte[] genl(int type, int cmd, byte[] attrs) {
        int len = 16 + 4 + attrs.length;
        ByteBuffer b = ByteBuffer.allocate(len).order(ByteOrder.nativeOrder());
        b.putInt(len).putShort((short) type).putShort((short) 0).putInt(1).putInt(0);
        b.put((byte) cmd).put((byte) 1).putShort((short) 0).put(attrs);
        return b.array();
    }

    /** A {@code TASKSTATS_CMD_NEW} as the kernel sends it at a thread group's last exit: AGGR_PID and AGGR_TGID. */
    private static byte[] exit(int pid, int tgid) {
        byte[] stats = new byte[328];
        return genl(
                FAMILY,
                Taskstats.TASKSTATS_CMD_NEW,
                concat(
                        nla(4, concat(nla(1, u32(pid)), nla(3, stats))),
                        nla(Taskstats.TASKSTATS_TYPE_AGGR_TGID, concat(nla(2, u32(tgid)), nla(3, stats)))));
    }

    /** An {@code NLMSG_ERROR} of sequence number 1 (error 0: an acknowledgement), with room for the request's header. */
    private static byte[] nlmsgError(int error) {
        return ByteBuffer.allocate(36)
                .order(ByteOrder.nativeOrder())
                .putInt(36)
                .putShort((short) Taskstats.NLMSG_ERROR)
                .putShort((short) 0)
                .putInt(1)
                .putInt(0)
                .putInt(error)
                .array();
    }

    private static List<Integer> exits(byte[] datagram) {
        List<Integer> out = new ArrayList<>();
        Taskstats.threadGroupExits(MemorySegment.ofArray(datagram), datagram.length, FAMILY, out::add);
        return out;
    }

    @Test
    void shouldReportThreadGroupWhenLastThreadExits() {
        assertEquals(List.of(4242), exits(exit(4250, 4242)));
    }

    @Test
    void shouldReportEveryMessageOfDatagram() {
        assertEquals(List.of(10, 20), exits(concat(exit(11, 10), exit(21, 20))));
    }

    @Test
    void shouldIgnoreThreadExitWithoutThreadGroupRecord() {
        byte[] threadOnly =
                genl(FAMILY, Taskstats.TASKSTATS_CMD_NEW, nla(4, concat(nla(1, u32(7)), nla(3, new byte[8]))));
        assertEquals(List.of(), exits(threadOnly));
    }

    @Test
    void shouldIgnoreOtherFamilyOrCommand() {
        byte[] other = exit(5, 5);
        other[4] = (byte) (FAMILY + 1);
        assertEquals(List.of(), exits(other));
        byte[] get = exit(5, 5);
        get[16] = (byte) Taskstats.TASKSTATS_CMD_GET;
        assertEquals(List.of(), exits(get));
    }

    @Test
    void shouldStopAtMessageLongerThanDatagram() {
        byte[] m = exit(9, 9);
        byte[] cut = java.util.Arrays.copyOf(m, m.length - 8);
        assertEquals(List.of(), exits(cut));
        // a length field past the end after a good message: the good one counts, the walk stops
        byte[] bad = concat(
                exit(1, 1),
                ByteBuffer.allocate(16)
                        .order(ByteOrder.nativeOrder())
                        .putInt(4096)
                        .array());
        assertEquals(List.of(1), exits(bad));
    }

    @Test
    void shouldNotLoopOnZeroLengths() {
        assertEquals(List.of(), exits(new byte[64]));
        // an attribute of length 0 inside a valid message ends the attribute walk
        byte[] zeroAttr = genl(FAMILY, Taskstats.TASKSTATS_CMD_NEW, new byte[8]);
        assertEquals(List.of(), exits(zeroAttr));
    }

    @Test
    void shouldSkipThreadGroupIdTooShort() {
        byte[] shortId =
                genl(FAMILY, Taskstats.TASKSTATS_CMD_NEW, nla(Taskstats.TASKSTATS_TYPE_AGGR_TGID, nla(2, new byte[2])));
        assertEquals(List.of(), exits(shortId));
    }

    @Test
    void shouldSkipNestedAttributeLongerThanItsParent() {
        byte[] inner = nla(2, u32(77));
        inner[0] = 40; // claims more than the parent holds
        byte[] m = genl(FAMILY, Taskstats.TASKSTATS_CMD_NEW, nla(Taskstats.TASKSTATS_TYPE_AGGR_TGID, inner));
        assertEquals(List.of(), exits(m));
    }

    @Test
    void shouldReadFamilyIdAndAcknowledgement() {
        byte[] family = genl(
                Taskstats.GENL_ID_CTRL,
                Taskstats.CTRL_CMD_NEWFAMILY,
                concat(
                        nla(Taskstats.CTRL_ATTR_FAMILY_NAME, "TASKSTATS\0".getBytes()),
                        nla(Taskstats.CTRL_ATTR_FAMILY_ID, new byte[] {0x1c, 0})));
        byte[] ack = nlmsgError(0);
        byte[] both = concat(family, ack);
        Taskstats.Answer a = Taskstats.answer(MemorySegment.ofArray(both), both.length, 1);
        assertEquals(new Taskstats.Answer(0, false, 0), Taskstats.answer(MemorySegment.ofArray(both), both.length, 2));
        assertEquals(new Taskstats.Answer(0, true, 0x1c), a);
    }

    @Test
    void shouldReadErrorAnswer() {
        byte[] err = nlmsgError(-Errno.EPERM);
        assertEquals(new Taskstats.Answer(Errno.EPERM, false, 0), Taskstats.answer(MemorySegment.ofArray(err), 36, 1));
    }

    /** A real exit: a JVM child (many threads) killed with SIGKILL; its thread group is reported. */
    @Test
    void shouldReportKilledMultiThreadedProcess() throws Exception {
        Taskstats listener;
        try {
            listener = Taskstats.listenForExits();
        } catch (RuntimeException e) {
            assumeTrue(false, "this process may not listen to TASKSTATS: " + e.getMessage());
            return;
        }
        try (listener) {
            String java = ProcessHandle.current().info().command().orElseThrow();
            Process sleeper = new ProcessBuilder(
                            java, "-Xmx32m", "-cp", System.getProperty("java.class.path"), Sleeper.class.getName())
                    .redirectErrorStream(true)
                    .start();
            try {
                // wait for it to run its main (it prints a line) so that the JVM's threads exist
                assertEquals(
                        "up",
                        new java.io.BufferedReader(new java.io.InputStreamReader(sleeper.getInputStream())).readLine());
                int pid = (int) sleeper.pid();
                sleeper.destroyForcibly();
                boolean[] seen = {false};
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
                while (!seen[0] && System.nanoTime() < deadline) {
                    Poll.poll(listener.fd(), Poll.POLLIN, 1_000);
                    listener.drain(tgid -> seen[0] |= tgid == pid);
                }
                assertTrue(seen[0], "no TASKSTATS exit for pid " + pid);
            } finally {
                sleeper.destroyForcibly().waitFor();
            }
        }
    }

    /** The child of {@link #shouldReportKilledMultiThreadedProcess}: says it runs, then waits to be killed. */
    public static final class Sleeper {
        public static void main(String[] args) throws InterruptedException {
            System.out.println("up");
            System.out.flush();
            Thread.sleep(60_000);
        }
    }
}
