package io.vhostd.shm.control;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link ControlChannel} over a {@code socketpair(SOCK_SEQPACKET)}: every message type with the fds the spec
 * ({@code spec/control-channel.md}) attaches to it, malformed packets (refused, their fds closed, the channel stays
 * up), end of stream, and the size limit.
 */
@Timeout(10)
class ControlChannelTest {
    private static final int POLL_TIMEOUT_MS = 5_000;

    private final Arena arena = Arena.ofConfined();
    private final List<Integer> openFds = new ArrayList<>();
    private ControlChannel sender;
    private ControlChannel receiver;

    @BeforeEach
    void setUp() {
        int[] pair = Socket.socketpair(Socket.SOCK_SEQPACKET);
        sender = new ControlChannel(pair[0]);
        receiver = new ControlChannel(pair[1]);
    }

    @AfterEach
    void tearDown() {
        sender.close();
        receiver.close();
        openFds.forEach(Unistd::close);
        arena.close();
    }

    /** An eventfd this test closes at the end. */
    private int eventfd() {
        int fd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        openFds.add(fd);
        return fd;
    }

    private int[] eventfds(int count) {
        int[] fds = new int[count];
        for (int i = 0; i < count; i++) {
            fds[i] = eventfd();
        }
        return fds;
    }

    private static List<ControlMessage.QpairRef> qpairs(int count) {
        List<ControlMessage.QpairRef> refs = new ArrayList<>();
        for (int q = 0; q < count; q++) {
            refs.add(new ControlMessage.QpairRef(q, 4096L * 16 * q, 4096L * 16));
        }
        return refs;
    }

    /** Every message type, with as many fds as the spec's table attaches to it. */
    static Stream<Arguments> messages() {
        return Stream.of(
                Arguments.of(
                        new ControlMessage.Hello(ControlMessage.PROTOCOL_VERSION, 4242, "0.1.0-test", 0x10000, 0x10000),
                        0),
                Arguments.of(new ControlMessage.RemoveController("vhost.0"), 0),
                Arguments.of(new ControlMessage.ControllerRemoved("vhost.0", null), 0),
                Arguments.of(new ControlMessage.ControllerRemoved("vhost.0", "session did not end within 10000 ms"), 0),
                Arguments.of(new ControlMessage.ReleaseController("vhost.0", true), 0),
                Arguments.of(new ControlMessage.ReleaseController("vhost.0", false), 0),
                Arguments.of(
                        new ControlMessage.ControllerReleased(
                                "vhost.0",
                                null,
                                1_000_000L,
                                1_250_000L,
                                0,
                                List.of(
                                        new ControlMessage.CarriedQueue(
                                                0,
                                                List.of(3, 9),
                                                List.of(0, 0x100),
                                                List.of(0, 1, 2),
                                                List.of(3, 9, 9)),
                                        new ControlMessage.CarriedQueue(
                                                1, List.of(), List.of(), List.of(), List.of()))),
                        0),
                Arguments.of(new ControlMessage.ControllerReleased("vhost.0", "packed ring", 0, 0, 0, List.of()), 0),
                Arguments.of(
                        new ControlMessage.CarryOver(
                                "vhost.0",
                                List.of(new ControlMessage.CarriedQueue(
                                        0, List.of(3), List.of(0), List.of(7), List.of(3)))),
                        0),
                Arguments.of(new ControlMessage.Welcome(ControlMessage.PROTOCOL_VERSION, "slave-1", 64L << 20), 1),
                Arguments.of(
                        new ControlMessage.AddController(
                                "vhost.0", "disk0", 1, 1L << 30, 512, false, "SERIAL-0001", 2, 128, qpairs(2)),
                        1 + 2 * 2),
                Arguments.of(new ControlMessage.ControllerListening("vhost.0"), 0),
                Arguments.of(new ControlMessage.RegisterRegion(17, "vhost.0", 3, 1L << 30, 4096), 1),
                Arguments.of(new ControlMessage.UnregisterRegion(18, "vhost.0", 3), 0),
                Arguments.of(new ControlMessage.Ack(17, null), 0),
                Arguments.of(new ControlMessage.Ack(18, "region id 3 already registered"), 0),
                Arguments.of(new ControlMessage.Custody("vhost.0", "kick", 1), 1),
                Arguments.of(new ControlMessage.CustodyRelease("vhost.0", "kick", 1), 0),
                Arguments.of(
                        new ControlMessage.SessionState(
                                "vhost.0",
                                true,
                                0x1_3000_0044L,
                                0x8_0203L,
                                List.of(
                                        new ControlMessage.QueueState(0, 256, true, 65535, 12, 3),
                                        new ControlMessage.QueueState(1, 0, false, 0, 0, 0))),
                        0),
                Arguments.of(new ControlMessage.Shutdown("master stopping"), 0),
                Arguments.of(new ControlMessage.ControllerJournal("vhost.0", 24576), 1),
                Arguments.of(
                        new ControlMessage.AdoptSession(
                                "vhost.0",
                                List.of(
                                        new ControlMessage.AdoptedFd("connection", 0),
                                        new ControlMessage.AdoptedFd("mem", 3),
                                        new ControlMessage.AdoptedFd("kick", 0),
                                        new ControlMessage.AdoptedFd("call", 0))),
                        4),
                Arguments.of(new ControlMessage.SessionAdopted("vhost.0", null, 123_456_789L), 0),
                Arguments.of(new ControlMessage.SessionAdopted("vhost.0", "packed rings cannot be adopted yet", 0), 0),
                Arguments.of(
                        new ControlMessage.PrepareController(new ControlMessage.AddController(
                                "vhost.0", "disk0", 1, 1L << 30, 512, false, "SERIAL-0001", 2, 128, qpairs(2))),
                        1 + 2 * 2),
                Arguments.of(new ControlMessage.ControllerPrepared("vhost.0", null), 0),
                Arguments.of(new ControlMessage.ControllerPrepared("vhost.0", "cannot map the journal"), 0),
                Arguments.of(
                        new ControlMessage.CommitController(
                                "vhost.0",
                                List.of(new ControlMessage.CarriedQueue(
                                        0, List.of(3), List.of(0x100), List.of(7), List.of(3)))),
                        0),
                Arguments.of(new ControlMessage.CommitController("vhost.0", List.of()), 0));
    }

    @Test
    void shouldNestAddControllerWhenPrepareControllerIsEncoded() throws Exception {
        sender.send(new ControlMessage.PrepareController(
                new ControlMessage.AddController("vhost.0", "disk0", 1, 1L << 30, 512, false, "S", 1, 128, qpairs(1))));

        JsonNode json = new ObjectMapper().readTree(receiveRaw());

        assertEquals("prepare_controller", json.get("type").asText());
        assertEquals(2, json.size(), "members: " + json);
        assertEquals("vhost.0", json.get("controller").get("name").asText());
        assertEquals(512, json.get("controller").get("block_size_bytes").asInt());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("messages")
    void shouldRoundTripMessageAndLiveFdsWhenSent(ControlMessage message, int fdCount) {
        int[] fds = eventfds(fdCount);

        sender.send(message, fds);
        ControlChannel.Incoming incoming = receiver.receive();

        assertEquals(message, incoming.message());
        assertEquals(fdCount, incoming.fds().length, "fds received");
        try {
            assertFdsLive(fds, incoming.fds());
        } finally {
            closeAll(incoming.fds());
        }
    }

    @Test
    void shouldRoundTripLargestControllerWhenItCarries129Fds() {
        int numQueues = 64;
        int[] fds = eventfds(1 + 2 * numQueues);
        ControlMessage message = new ControlMessage.AddController(
                "vhost.big", "disk-big", 7, 1L << 40, 4096, true, "S", numQueues, 1024, qpairs(numQueues));

        sender.send(message, fds);
        ControlChannel.Incoming incoming = receiver.receive();

        assertEquals(message, incoming.message());
        try {
            assertFdsLive(fds, incoming.fds());
        } finally {
            closeAll(incoming.fds());
        }
    }

    @Test
    void shouldRoundTripEveryHandoverSampleWhenWarmingUp() {
        // warmUp checks each message against what came back: a sample the codec changes throws
        List<ControlMessage> samples = HandoverWarmup.samples();
        assertEquals(3 * samples.size(), ControlChannel.warmUp(samples, 3, TimeUnit.SECONDS.toNanos(30)));
        assertTrue(samples.stream()
                .anyMatch(m -> m instanceof ControlMessage.ControllerReleased r
                        && r.carried().stream().mapToInt(q -> q.heads().size()).sum() == 32));
    }

    @Test
    void shouldStopAtBudgetWhenWarmingUp() {
        assertEquals(0, ControlChannel.warmUp(HandoverWarmup.samples(), 1_000, 0));
    }

    @Test
    void shouldUseSpecTypeNamesAndSnakeCaseKeysWhenEncoded() throws Exception {
        sender.send(new ControlMessage.RegisterRegion(5, "vhost.0", 9, 8192, 4096));

        JsonNode json = new ObjectMapper().readTree(receiveRaw());

        assertEquals("register_region", json.get("type").asText());
        assertEquals(5, json.get("request_id").asLong());
        assertEquals("vhost.0", json.get("controller").asText());
        assertEquals(9, json.get("region_id").asInt());
        assertEquals(8192, json.get("size_bytes").asLong());
        assertEquals(4096, json.get("mmap_offset_bytes").asLong());
        assertEquals(6, json.size(), "members: " + json);
    }

    /** Packets that are not valid messages, as a peer might send them. */
    static Stream<Arguments> malformedPackets() {
        return Stream.of(
                Arguments.of("not JSON", "{\"type\":\"hello\", protocol_version"),
                Arguments.of("unknown type", "{\"type\":\"format_disk\",\"name\":\"vhost.0\"}"),
                Arguments.of("no type member", "{\"name\":\"vhost.0\"}"),
                Arguments.of("unknown member", "{\"type\":\"controller_listening\",\"name\":\"vhost.0\",\"extra\":1}"),
                Arguments.of("wrong member type", "{\"type\":\"hello\",\"protocol_version\":\"one\",\"pid\":1}"),
                Arguments.of("JSON null", "null"),
                Arguments.of(
                        "prepare_controller with a controller that is not an object",
                        "{\"type\":\"prepare_controller\",\"controller\":\"vhost.0\"}"),
                Arguments.of(
                        "prepare_controller with a bad queue count",
                        "{\"type\":\"prepare_controller\",\"controller\":{\"name\":\"vhost.0\",\"num_queues\":\"two\"}}"),
                Arguments.of(
                        "commit_controller with carried requests that are not a list",
                        "{\"type\":\"commit_controller\",\"name\":\"vhost.0\",\"carried\":7}"),
                Arguments.of(
                        "commit_controller with a head that is not a number",
                        "{\"type\":\"commit_controller\",\"name\":\"vhost.0\",\"carried\":[{\"index\":0,"
                                + "\"heads\":[\"x\"],\"states\":[0],\"cids\":[],\"cid_heads\":[]}]}"),
                Arguments.of(
                        "controller_prepared with an unknown member",
                        "{\"type\":\"controller_prepared\",\"name\":\"vhost.0\",\"error\":null,\"x\":1}"),
                Arguments.of("JSON array", "[1,2,3]"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("malformedPackets")
    void shouldRefuseAndCloseFdsThenReceiveNextWhenPacketMalformed(String name, String packet) {
        int[] watched = Socket.socketpair(Socket.SOCK_STREAM);
        openFds.add(watched[1]);
        int extra = eventfd();
        // the packet carries one end of a socketpair; once every copy of that end is closed, the other end hangs up
        sendRaw(packet.getBytes(StandardCharsets.UTF_8), watched[0], extra);
        Unistd.close(watched[0]);

        assertThrows(ControlChannel.ControlProtocolException.class, receiver::receive, name);

        assertHungUp(watched[1], "the receiver closed the fds of the refused packet");
        assertNextMessageArrives();
    }

    @Test
    void shouldRefuseAndCloseFdsWhenPacketCarriesMoreThanMaxFds() {
        int[] watched = Socket.socketpair(Socket.SOCK_STREAM);
        openFds.add(watched[1]);
        int[] fds = new int[ControlChannel.MAX_FDS + 1];
        fds[0] = watched[0];
        System.arraycopy(eventfds(ControlChannel.MAX_FDS), 0, fds, 1, ControlChannel.MAX_FDS);
        sender.send(new ControlMessage.ControllerListening("vhost.0"), fds);
        Unistd.close(watched[0]);

        assertThrows(ControlChannel.ControlProtocolException.class, receiver::receive);

        assertHungUp(watched[1], "the fds that fitted were closed");
        assertNextMessageArrives();
    }

    @Test
    void shouldRefuseWhenPeerPacketExceedsMaxMessageBytes() {
        byte[] big = ("{\"type\":\"shutdown\",\"reason\":\"" + "x".repeat(ControlChannel.MAX_MESSAGE_BYTES) + "\"}")
                .getBytes(StandardCharsets.UTF_8);
        sendRaw(big);

        // the packet is cut to MAX_MESSAGE_BYTES, which is not a whole JSON object
        assertThrows(ControlChannel.ControlProtocolException.class, receiver::receive);

        assertNextMessageArrives();
    }

    @Test
    void shouldRefuseOnSendWhenMessageExceedsMaxMessageBytes() {
        ControlMessage big = new ControlMessage.Shutdown("x".repeat(ControlChannel.MAX_MESSAGE_BYTES));

        assertThrows(IllegalArgumentException.class, () -> sender.send(big, eventfd()));

        // nothing was sent and the channel still works
        assertNextMessageArrives();
        assertEquals(0, Poll.poll(receiver.fd(), Poll.POLLIN, 0), "no packet left over");
    }

    @Test
    void shouldReturnNullWhenPeerClosed() {
        sender.send(new ControlMessage.Shutdown("last words"));
        sender.close();

        assertEquals(
                new ControlMessage.Shutdown("last words"), receiver.receive().message());
        assertNull(receiver.receive(), "end of stream");
        assertNull(receiver.receive(), "still end of stream");
    }

    @Test
    void shouldReturnNullWhenReceiveBlockedAndChannelShutDown() throws Exception {
        CompletableFuture<ControlChannel.Incoming> received = new CompletableFuture<>();
        Thread.ofPlatform().daemon(true).start(() -> received.complete(receiver.receive()));

        // whether the reader is already blocked or not, shutdown makes its receive return end of stream
        receiver.shutdown();

        assertNull(received.get(POLL_TIMEOUT_MS, TimeUnit.MILLISECONDS));
    }

    @Test
    void shouldRefuseSendWhenChannelClosed() {
        sender.close();

        assertThrows(IllegalStateException.class, () -> sender.send(new ControlMessage.Shutdown("late")));
    }

    private void assertNextMessageArrives() {
        ControlMessage next = new ControlMessage.Ack(99, null);
        int fd = eventfd();
        sender.send(next, fd);
        ControlChannel.Incoming incoming = receiver.receive();
        assertEquals(next, incoming.message());
        try {
            assertFdsLive(new int[] {fd}, incoming.fds());
        } finally {
            closeAll(incoming.fds());
        }
    }

    /** Each received fd is a new descriptor of the same eventfd as the sent one: a write on it reaches the original. */
    private static void assertFdsLive(int[] sent, int[] received) {
        assertEquals(sent.length, received.length, "fd count");
        for (int i = 0; i < sent.length; i++) {
            assertNotEquals(sent[i], received[i], "a new descriptor");
            assertEquals(Fcntl.FD_CLOEXEC, Fcntl.fcntl(received[i], Fcntl.F_GETFD, 0), "close-on-exec");
            Eventfd.eventfd_write(received[i], i + 1);
            assertEquals(i + 1, Eventfd.eventfd_read(sent[i]), "fd " + i + " in order and live");
        }
    }

    private static void assertHungUp(int fd, String why) {
        int revents = Poll.poll(fd, Poll.POLLIN, POLL_TIMEOUT_MS);
        assertTrue((revents & Poll.POLLHUP) != 0, why + ": revents=0x" + Integer.toHexString(revents));
    }

    private void sendRaw(byte[] bytes, int... fds) {
        MemorySegment buf = arena.allocate(bytes.length);
        MemorySegment.copy(bytes, 0, buf, ValueLayout.JAVA_BYTE, 0, bytes.length);
        Socket.sendmsg(sender.fd(), buf, bytes.length, fds);
    }

    private String receiveRaw() {
        MemorySegment buf = arena.allocate(ControlChannel.MAX_MESSAGE_BYTES);
        Socket.Received received = Socket.recvmsg(receiver.fd(), buf, ControlChannel.MAX_MESSAGE_BYTES, 0);
        return new String(buf.asSlice(0, received.bytes()).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
    }

    private static void closeAll(int[] fds) {
        for (int fd : fds) {
            Unistd.close(fd);
        }
    }
}
