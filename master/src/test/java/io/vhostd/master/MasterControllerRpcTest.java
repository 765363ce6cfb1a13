package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.master.bdev.FakeNvmeTree;
import io.vhostd.master.config.VhostdConfig;
import io.vhostd.master.hugepages.HugepagePool;
import io.vhostd.rpc.RpcClient;
import io.vhostd.rpc.RpcException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code vhost_create_blk_controller}, {@code vhost_delete_controller} and {@code slave_get_slaves} over the RPC
 * socket of an in-process {@link Master} without a slave (the slave side is in dist's ControllerRpcIT): validation,
 * claims, arena space, sockets, the registry across restarts.
 */
@Timeout(120)
class MasterControllerRpcTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private FakeNvmeTree nvme;
    private Path proc;
    private Path sys;
    private final List<Master> masters = new ArrayList<>();
    private Master master;
    private RpcClient client;

    @BeforeEach
    void setUp() throws IOException {
        nvme = new FakeNvmeTree(dir.resolve("hw"));
        proc = dir.resolve("hw").resolve("proc");
        sys = nvme.sysRoot();
        Files.createDirectories(proc.resolve("sys/vm"));
        Files.createDirectories(sys.resolve("kernel/mm/hugepages/hugepages-2048kB"));
        Files.writeString(proc.resolve("sys/vm/nr_hugepages"), "0\n");
        Files.writeString(sys.resolve("kernel/mm/hugepages/hugepages-2048kB/free_hugepages"), "0\n");
        Files.write(dir.resolve("existing.img"), new byte[1 << 20]);
        Files.write(dir.resolve("ro.img"), new byte[1 << 20]);
    }

    @AfterEach
    void tearDown() throws IOException {
        if (client != null) {
            client.close();
        }
        masters.forEach(Master::close);
    }

    /** One configured controller (1 queue) on cfg0; an arena of 2 MiB, which the master grows to fit one more. */
    private String config() {
        return """
                run_dir: $DIR/run
                hugepages: {enabled: false, arena_size_bytes: 2097152}
                bdevs:
                  - {name: cfg0, type: file, path: $DIR/existing.img}
                  - {name: cfgnull, type: null, num_blocks: 64}
                  - {name: ro0, type: file, path: $DIR/ro.img, read_only: true}
                controllers:
                  - {name: vhost-blk0, type: vhost-user-blk, bdev: cfg0, socket: vb0.sock}
                """.replace("$DIR", dir.toString());
    }

    private void start() throws Exception {
        if (client != null) {
            client.close();
        }
        VhostdConfig cfg = VhostdConfig.parse(config());
        master = new Master(
                cfg, new Master.Options(false, nvme.probe(), new HugepagePool(proc, sys, HugepagePool.KERNEL_FILES)));
        masters.add(master);
        master.start();
        client = RpcClient.connect(Path.of(cfg.rpcSocket()), Duration.ofSeconds(30));
    }

    private void restart() throws Exception {
        master.shutdown("test restart");
        start();
    }

    private JsonNode call(String method, String params) throws Exception {
        return client.call(method, params == null ? null : JSON.readTree(params.replace("$DIR", dir.toString())));
    }

    private List<String> controllerNames() throws Exception {
        List<String> names = new ArrayList<>();
        call("vhost_get_controllers", null)
                .forEach(c -> names.add(c.path("name").asText()));
        return names;
    }

    private String claimedBy(String bdev) throws Exception {
        JsonNode b = call("bdev_get_bdevs", "{\"name\":\"" + bdev + "\"}").get(0);
        return b.path("claimed_by").isNull() ? null : b.path("claimed_by").asText();
    }

    @Test
    void shouldCreateListAndDeleteControllerWhenAskedOverRpc() throws Exception {
        start();

        assertTrue(call("vhost_create_blk_controller", "{\"ctrlr\":\"vb1\",\"dev_name\":\"cfgnull\"}")
                .asBoolean());

        JsonNode c = call("vhost_get_controllers", "{\"name\":\"vb1\"}").get(0);
        Path socket = dir.resolve("run").resolve("vb1.sock");
        assertEquals(socket.toString(), c.path("socket").asText(), "default socket <run_dir>/<ctrlr>.sock");
        assertEquals("cfgnull", c.path("bdev").asText());
        assertEquals(1, c.path("num_queues").asInt());
        assertEquals(
                PosixFilePermissions.fromString("rw-rw----"),
                Files.getPosixFilePermissions(socket, LinkOption.NOFOLLOW_LINKS));
        assertEquals("vb1", claimedBy("cfgnull"));
        assertEquals(List.of("vhost-blk0", "vb1"), controllerNames());

        assertTrue(call("vhost_delete_controller", "{\"ctrlr\":\"vb1\"}").asBoolean());

        assertEquals(List.of("vhost-blk0"), controllerNames());
        assertFalse(Files.exists(socket, LinkOption.NOFOLLOW_LINKS), "socket file removed");
        assertEquals(null, claimedBy("cfgnull"), "bdev released");
        assertTrue(call("bdev_delete", "{\"name\":\"cfgnull\"}").asBoolean(), "and deletable");
    }

    @Test
    void shouldRecreateRpcControllersButNotDeletedOnesWhenMasterRestarts() throws Exception {
        start();
        call("bdev_null_create", "{\"name\":\"n1\",\"num_blocks\":16,\"block_size\":512}");
        call("vhost_create_blk_controller", "{\"ctrlr\":\"vb2\",\"dev_name\":\"cfgnull\"}");
        call("vhost_delete_controller", "{\"ctrlr\":\"vb2\"}");
        call(
                "vhost_create_blk_controller",
                "{\"ctrlr\":\"vb1\",\"dev_name\":\"n1\",\"socket\":\"$DIR/vb1.sock\",\"serial\":\"SER1\","
                        + "\"readonly\":true}");

        restart();

        assertEquals(List.of("vhost-blk0", "vb1"), controllerNames());
        JsonNode c = call("vhost_get_controllers", "{\"name\":\"vb1\"}").get(0);
        assertEquals(dir.resolve("vb1.sock").toString(), c.path("socket").asText());
        assertTrue(Files.exists(dir.resolve("vb1.sock"), LinkOption.NOFOLLOW_LINKS));
        assertEquals("vb1", claimedBy("n1"));
        assertEquals(null, claimedBy("cfgnull"));

        // a configured controller can be deleted; the configuration brings it back with the next master
        call("vhost_delete_controller", "{\"ctrlr\":\"vhost-blk0\"}");
        assertEquals(List.of("vb1"), controllerNames());
        restart();
        assertEquals(List.of("vhost-blk0", "vb1"), controllerNames());
    }

    @Test
    void shouldKeepRecordWhoseBdevIsGoneUntilDeletedWhenMasterRestarts() throws Exception {
        start();
        call("bdev_file_create", "{\"name\":\"f1\",\"filename\":\"$DIR/f1.img\",\"size_bytes\":65536}");
        call("vhost_create_blk_controller", "{\"ctrlr\":\"vf1\",\"dev_name\":\"f1\"}");
        master.shutdown("test restart");
        Files.delete(dir.resolve("f1.img"));

        start();

        assertEquals(List.of("vhost-blk0"), controllerNames(), "no bdev, no controller");
        assertTrue(call("vhost_delete_controller", "{\"ctrlr\":\"vf1\"}").asBoolean(), "its record is removed");
        RpcException e = assertThrows(RpcException.class, () -> call("vhost_delete_controller", "{\"ctrlr\":\"vf1\"}"));
        assertEquals("no_such_controller", e.error().name());
    }

    @Test
    void shouldAnswerArenaFullAndUndoEverythingWhenQueuePairsDoNotFit() throws Exception {
        start();

        RpcException e = assertThrows(
                RpcException.class,
                () -> call(
                        "vhost_create_blk_controller",
                        "{\"ctrlr\":\"big\",\"dev_name\":\"cfgnull\",\"num_queues\":64}"));

        assertEquals("arena_full", e.error().name(), e.error().message());
        assertTrue(
                e.error().message().contains("hugepages.arena_size_bytes"),
                e.error().message());
        assertEquals(null, claimedBy("cfgnull"), "claim undone");
        assertFalse(Files.exists(dir.resolve("run").resolve("big.sock"), LinkOption.NOFOLLOW_LINKS));
        assertEquals(List.of("vhost-blk0"), controllerNames());

        // the room the master kept for one more queue pair is still there
        call("vhost_create_blk_controller", "{\"ctrlr\":\"small\",\"dev_name\":\"cfgnull\"}");
    }

    @Test
    void shouldReuseArenaSpaceWhenControllerWasDeleted() throws Exception {
        start();
        call("bdev_null_create", "{\"name\":\"n1\",\"num_blocks\":16,\"block_size\":512}");
        // fill the arena: create 1-queue controllers until it is full
        int created = 0;
        while (true) {
            String bdev = created == 0 ? "cfgnull" : "n1";
            try {
                call("vhost_create_blk_controller", "{\"ctrlr\":\"c" + created + "\",\"dev_name\":\"" + bdev + "\"}");
                created++;
            } catch (RpcException e) {
                assertEquals("arena_full", e.error().name(), e.error().message());
                break;
            }
            if (created == 2) {
                break;
            }
        }
        assertTrue(created >= 1, "one queue pair fits");
        String last = "c" + (created - 1);
        String lastBdev = created == 1 ? "cfgnull" : "n1";
        call("vhost_delete_controller", "{\"ctrlr\":\"" + last + "\"}");

        assertTrue(call("vhost_create_blk_controller", "{\"ctrlr\":\"again\",\"dev_name\":\"" + lastBdev + "\"}")
                .asBoolean());
    }

    static Stream<Arguments> badRequests() {
        return Stream.of(
                Arguments.of("{\"ctrlr\":\"x\",\"dev_name\":\"nope\"}", "no_such_bdev", "nope"),
                Arguments.of("{\"ctrlr\":\"vhost-blk0\",\"dev_name\":\"cfgnull\"}", "name_in_use", "vhost-blk0"),
                Arguments.of("{\"ctrlr\":\"x\",\"dev_name\":\"cfg0\"}", "bdev_busy", "served by controller"),
                Arguments.of("{\"ctrlr\":\"a b\",\"dev_name\":\"cfgnull\"}", "invalid_params", "ctrlr"),
                Arguments.of("{\"dev_name\":\"cfgnull\"}", "invalid_params", "ctrlr"),
                Arguments.of("{\"ctrlr\":\"x\",\"dev_name\":\"cfgnull\",\"num_queues\":65}", "invalid_params", ""),
                Arguments.of("{\"ctrlr\":\"x\",\"dev_name\":\"cfgnull\",\"num_queues\":\"2\"}", "invalid_params", ""),
                Arguments.of(
                        "{\"ctrlr\":\"x\",\"dev_name\":\"cfgnull\",\"serial\":\"123456789012345678901\"}",
                        "invalid_params",
                        "serial"),
                Arguments.of(
                        "{\"ctrlr\":\"x\",\"dev_name\":\"ro0\",\"readonly\":false}", "invalid_params", "read-only"),
                Arguments.of(
                        "{\"ctrlr\":\"x\",\"dev_name\":\"cfgnull\",\"socket\":\"/" + "s".repeat(120) + "\"}",
                        "invalid_params",
                        "sun_path"),
                Arguments.of(
                        "{\"ctrlr\":\"x\",\"dev_name\":\"cfgnull\",\"socket\":\"vb0.sock\"}",
                        "name_in_use",
                        "vb0.sock"),
                Arguments.of(
                        "{\"ctrlr\":\"x\",\"dev_name\":\"cfgnull\",\"socket\":\"rpc.sock\"}",
                        "name_in_use",
                        "rpc.sock"),
                Arguments.of("{\"ctrlr\":\"x\",\"dev_name\":\"cfgnull\",\"cpumask\":\"0x1\"}", "invalid_params", ""));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badRequests")
    void shouldAnswerNamedErrorAndCreateNothingWhenCreateIsBad(String params, String error, String says)
            throws Exception {
        start();

        RpcException e = assertThrows(RpcException.class, () -> call("vhost_create_blk_controller", params));

        assertEquals(error, e.error().name(), e.error().message());
        assertTrue(e.error().message().contains(says), e.error().message());
        assertEquals(List.of("vhost-blk0"), controllerNames());
        assertEquals(null, claimedBy("cfgnull"));
    }

    @Test
    void shouldAnswerNamedErrorsWhenDeleteIsBad() throws Exception {
        start();

        RpcException missing =
                assertThrows(RpcException.class, () -> call("vhost_delete_controller", "{\"ctrlr\":\"nope\"}"));
        RpcException noParam = assertThrows(RpcException.class, () -> call("vhost_delete_controller", "{}"));

        assertEquals("no_such_controller", missing.error().name());
        assertEquals("invalid_params", noParam.error().name());
        assertEquals(List.of("vhost-blk0"), controllerNames());
    }

    @Test
    void shouldListNoSlavesWhenMasterRunsWithoutOne() throws Exception {
        start();

        assertEquals(JSON.readTree("{\"slaves\":[]}"), call("slave_get_slaves", null));
        RpcException e = assertThrows(RpcException.class, () -> call("slave_get_slaves", "{\"x\":1}"));
        assertEquals("invalid_params", e.error().name());
    }
}
