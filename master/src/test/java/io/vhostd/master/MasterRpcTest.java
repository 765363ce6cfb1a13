package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
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
import java.nio.file.Path;
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
 * The master's bdev and huge page methods over its RPC socket: an in-process {@link Master} without a slave, on a
 * fake sysfs (two NVMe controllers), a fake huge page pool and a registry in a temp directory.
 */
@Timeout(120)
class MasterRpcTest {
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
        Path c0 = nvme.controller("nvme0", "Fake NVMe 0", "SN0", "FW0", "pcie", "0000:01:00.0");
        nvme.namespace(c0, "nvme0n1", "nvme0n1", 1, 1L << 20, 512);
        nvme.namespace(c0, "nvme0n2", "nvme0n2", 2, 2L << 20, 4096);
        Path c1 = nvme.controller("nvme1", "Fake NVMe 1", "SN1", "FW1", "pcie", "0000:02:00.0");
        nvme.namespace(c1, "nvme1n1", "nvme1n1", 1, 1L << 20, 512);
        proc = dir.resolve("hw").resolve("proc");
        sys = nvme.sysRoot();
        Files.createDirectories(proc.resolve("sys/vm"));
        Files.createDirectories(sys.resolve("kernel/mm/hugepages/hugepages-2048kB"));
        Files.writeString(proc.resolve("sys/vm/nr_hugepages"), "1\n");
        Files.writeString(sys.resolve("kernel/mm/hugepages/hugepages-2048kB/free_hugepages"), "0\n");
        Files.write(dir.resolve("existing.img"), new byte[1 << 20]);
    }

    @AfterEach
    void tearDown() throws IOException {
        if (client != null) {
            client.close();
        }
        masters.forEach(Master::close);
    }

    private String config(String extra) {
        return ("""
                        run_dir: $DIR/run
                        hugepages: {enabled: false}
                        bdevs:
                          - {name: cfg0, type: file, path: $DIR/existing.img}
                          - {name: cfgnull, type: null, num_blocks: 64}
                        controllers:
                          - {name: vhost-blk0, type: vhost-user-blk, bdev: cfg0, socket: vb0.sock}
                        """ + extra).replace("$DIR", dir.toString());
    }

    /** Starts a master (no slave) on {@code yaml} and connects to its RPC socket. */
    private void start(String yaml) throws Exception {
        if (client != null) {
            client.close();
        }
        VhostdConfig cfg = VhostdConfig.parse(yaml);
        master = new Master(
                cfg, new Master.Options(false, nvme.probe(), new HugepagePool(proc, sys, HugepagePool.KERNEL_FILES)));
        masters.add(master);
        master.start();
        client = RpcClient.connect(Path.of(cfg.rpcSocket()), Duration.ofSeconds(30));
    }

    private JsonNode call(String method, String params) throws Exception {
        return client.call(method, params == null ? null : JSON.readTree(params.replace("$DIR", dir.toString())));
    }

    private JsonNode bdev(String name) throws Exception {
        JsonNode list = call("bdev_get_bdevs", "{\"name\":\"" + name + "\"}");
        assertEquals(1, list.size());
        return list.get(0);
    }

    private List<String> bdevNames() throws Exception {
        List<String> names = new ArrayList<>();
        call("bdev_get_bdevs", null).forEach(b -> names.add(b.path("name").asText()));
        return names;
    }

    @Test
    void shouldCreateListAndDeleteEveryBdevTypeWhenAskedOverRpc() throws Exception {
        start(config(""));

        assertEquals(
                "img1",
                call(
                                "bdev_file_create",
                                "{\"name\":\"img1\",\"filename\":\"$DIR/img1.img\",\"size_bytes\":1048576,\"direct\":true,"
                                        + "\"block_size\":4096}")
                        .asText());
        assertEquals(
                "n0",
                call("bdev_null_create", "{\"name\":\"n0\",\"num_blocks\":1024,\"block_size\":4096}")
                        .asText());
        assertEquals(
                "m0",
                call("bdev_malloc_create", "{\"name\":\"m0\",\"num_blocks\":256,\"block_size\":512}")
                        .asText());
        assertEquals(
                JSON.readTree("[\"nvn1\",\"nvn2\"]"),
                call("bdev_nvme_attach_controller", "{\"name\":\"nv\",\"traddr\":\"0000:01:00.0\"}"));
        assertEquals(
                JSON.readTree("[\"nvme1n1\"]"),
                call(
                        "bdev_nvme_attach_controller",
                        "{\"name\":\"nvme1\",\"device\":\"/dev/nvme1\",\"read_only\":true}"));

        assertEquals(List.of("cfg0", "cfgnull", "img1", "n0", "m0", "nvn1", "nvn2", "nvme1n1"), bdevNames());
        assertTrue(Files.size(dir.resolve("img1.img")) == 1 << 20, "bdev_file_create made the image");
        JsonNode img1 = bdev("img1");
        assertEquals("file", img1.path("type").asText());
        assertEquals(4096, img1.path("block_size").asInt());
        assertEquals(256, img1.path("num_blocks").asInt());
        assertTrue(img1.path("direct").asBoolean());
        assertTrue(img1.path("persistent").asBoolean());
        assertEquals("io_uring", img1.path("engine").asText());
        JsonNode n0 = bdev("n0");
        assertEquals("null", n0.path("type").asText());
        assertEquals(4L << 20, n0.path("size_bytes").asLong());
        assertTrue(n0.path("path").isNull());
        assertEquals("memory", n0.path("engine").asText());
        assertEquals("malloc", bdev("m0").path("type").asText());
        JsonNode nvn2 = bdev("nvn2");
        assertEquals("nvme", nvn2.path("type").asText());
        assertEquals("nv", nvn2.path("nvme_controller").asText());
        assertEquals(4096, nvn2.path("block_size").asInt());
        assertTrue(bdev("nvme1n1").path("read_only").asBoolean());
        JsonNode cfg0 = bdev("cfg0");
        assertEquals("vhost-blk0", cfg0.path("claimed_by").asText());
        assertFalse(cfg0.path("persistent").asBoolean());

        for (String name : new String[] {"img1", "n0", "m0", "nvn1", "nvn2", "nvme1n1", "cfgnull"}) {
            assertTrue(call("bdev_delete", "{\"name\":\"" + name + "\"}").asBoolean(), name);
        }
        assertEquals(List.of("cfg0"), bdevNames());
        assertTrue(Files.exists(dir.resolve("img1.img")), "bdev_delete leaves the image");
    }

    static Stream<Arguments> badRequests() {
        return Stream.of(
                Arguments.of("bdev_file_create", "{\"name\":\"x\"}", "invalid_params", "filename"),
                Arguments.of(
                        "bdev_file_create",
                        "{\"name\":\"x\",\"filename\":\"rel.img\",\"size_bytes\":4096}",
                        "invalid_params",
                        "filename: must be an absolute path"),
                Arguments.of(
                        "bdev_file_create",
                        "{\"name\":\"x\",\"filename\":\"$DIR/none.img\"}",
                        "invalid_params",
                        "size_bytes: missing"),
                Arguments.of(
                        "bdev_file_create",
                        "{\"name\":\"x\",\"filename\":\"$DIR/x.img\",\"size_bytes\":1000}",
                        "invalid_params",
                        "size_bytes: must be a multiple of 512"),
                Arguments.of(
                        "bdev_file_create",
                        "{\"name\":\"a b\",\"filename\":\"$DIR/x.img\",\"size_bytes\":4096}",
                        "invalid_params",
                        "name: 'a b' must be 1 to 64 characters"),
                Arguments.of(
                        "bdev_file_create",
                        "{\"name\":\"cfg0\",\"filename\":\"$DIR/x.img\",\"size_bytes\":4096}",
                        "name_in_use",
                        "cfg0"),
                Arguments.of(
                        "bdev_file_create",
                        "{\"name\":\"again\",\"filename\":\"$DIR/existing.img\"}",
                        "bdev_busy",
                        "already open as bdev 'cfg0'"),
                Arguments.of(
                        "bdev_file_create",
                        "{\"name\":\"x\",\"filename\":\"$DIR/x.img\",\"sizebytes\":4096}",
                        "invalid_params",
                        "unknown param 'sizebytes'"),
                Arguments.of(
                        "bdev_null_create",
                        "{\"name\":\"x\",\"num_blocks\":8,\"block_size\":100}",
                        "invalid_params",
                        "block_size"),
                Arguments.of(
                        "bdev_null_create",
                        "{\"name\":\"x\",\"num_blocks\":9007199254740992,\"block_size\":512}",
                        "invalid_params",
                        "num_blocks: must be between 1 and"),
                Arguments.of(
                        "bdev_malloc_create",
                        "{\"name\":\"cfgnull\",\"num_blocks\":8,\"block_size\":512}",
                        "name_in_use",
                        "cfgnull"),
                Arguments.of("bdev_malloc_create", "{\"name\":\"x\",\"num_blocks\":8}", "invalid_params", "block_size"),
                Arguments.of(
                        "bdev_nvme_attach_controller",
                        "{\"name\":\"nv\"}",
                        "invalid_params",
                        "traddr: missing (give traddr or device)"),
                Arguments.of(
                        "bdev_nvme_attach_controller",
                        "{\"name\":\"nv\",\"device\":\"nvme0\",\"traddr\":\"0000:01:00.0\"}",
                        "invalid_params",
                        "not both"),
                Arguments.of(
                        "bdev_nvme_attach_controller",
                        "{\"name\":\"nv\",\"device\":\"sda\"}",
                        "invalid_params",
                        "not an NVMe controller name"),
                Arguments.of(
                        "bdev_nvme_attach_controller",
                        "{\"name\":\"nv\",\"traddr\":\"0000:77:00.0\"}",
                        "no_such_device",
                        "no NVMe controller at traddr 0000:77:00.0"),
                Arguments.of(
                        "bdev_nvme_attach_controller",
                        "{\"name\":\"nv\",\"device\":\"nvme9\"}",
                        "no_such_device",
                        "no NVMe controller named nvme9"),
                Arguments.of("bdev_delete", "{\"name\":\"nope\"}", "no_such_bdev", "nope"),
                Arguments.of("bdev_delete", "{\"name\":\"cfg0\"}", "bdev_busy", "served by controller 'vhost-blk0'"),
                Arguments.of("bdev_delete", "{}", "invalid_params", "name"),
                Arguments.of("nvme_get_controllers", "{\"name\":\"nvme5\"}", "no_such_device", "nvme5"),
                Arguments.of("framework_get_hugepages", "{\"x\":1}", "invalid_params", "no params"),
                Arguments.of("bdev_get_bdevs", "{\"name\":\"nope\"}", "no_such_bdev", "nope"));
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("badRequests")
    void shouldAnswerNamedErrorWhenRequestIsBad(String method, String params, String error, String says)
            throws Exception {
        start(config(""));
        List<String> before = bdevNames();

        RpcException e = assertThrows(RpcException.class, () -> call(method, params));

        assertEquals(error, e.error().name(), e.error().message());
        assertTrue(e.error().message().contains(says), e.error().message());
        assertEquals(before, bdevNames(), "nothing created or deleted");
    }

    @Test
    void shouldRecreateRpcBdevsWhenMasterRestarts() throws Exception {
        start(config(""));
        call("bdev_file_create", "{\"name\":\"img1\",\"filename\":\"$DIR/img1.img\",\"size_bytes\":65536}");
        call("bdev_malloc_create", "{\"name\":\"m0\",\"num_blocks\":16,\"block_size\":512}");
        call("bdev_null_create", "{\"name\":\"dup\",\"num_blocks\":16,\"block_size\":512}");
        call("bdev_nvme_attach_controller", "{\"name\":\"nv\",\"traddr\":\"0000:01:00.0\"}");
        call("bdev_delete", "{\"name\":\"nvn1\"}");
        master.shutdown("test restart");

        // the new configuration also declares "dup": the configured one wins
        start(config("")
                .replace("  - {name: cfgnull", "  - {name: dup, type: malloc, num_blocks: 8}\n  - {name: cfgnull"));

        assertEquals(List.of("cfg0", "dup", "cfgnull", "img1", "m0", "nvn2"), bdevNames());
        assertEquals("malloc", bdev("dup").path("type").asText());
        assertFalse(bdev("dup").path("persistent").asBoolean());
        assertTrue(bdev("img1").path("persistent").asBoolean());
        assertEquals(65536, bdev("img1").path("size_bytes").asInt());
        assertEquals("nvme", bdev("nvn2").path("type").asText());
        assertTrue(Files.exists(dir.resolve("run").resolve("registry.dat")));

        // deleted over RPC: gone after the next restart too
        call("bdev_delete", "{\"name\":\"m0\"}");
        master.shutdown("test restart");
        start(config(""));
        assertEquals(List.of("cfg0", "cfgnull", "img1", "dup", "nvn2"), bdevNames(), "the recorded dup is back");
    }

    @Test
    void shouldListProbedControllersWithAttachNamesWhenAsked() throws Exception {
        start(config(""));
        call("bdev_nvme_attach_controller", "{\"name\":\"fast\",\"device\":\"nvme0\"}");
        call("bdev_delete", "{\"name\":\"fastn2\"}");

        JsonNode all = call("nvme_get_controllers", null);

        assertEquals(2, all.size());
        JsonNode c0 = all.get(0);
        assertEquals("nvme0", c0.path("name").asText());
        assertEquals("Fake NVMe 0", c0.path("model").asText());
        assertEquals("SN0", c0.path("serial").asText());
        assertEquals("FW0", c0.path("firmware").asText());
        assertEquals("pcie", c0.path("transport").asText());
        assertEquals("0000:01:00.0", c0.path("traddr").asText());
        assertEquals("fast", c0.path("attached_as").asText());
        assertEquals(2, c0.path("namespaces").size());
        assertEquals("fastn1", c0.path("namespaces").get(0).path("bdev").asText());
        assertTrue(c0.path("namespaces").get(1).path("bdev").isNull(), "fastn2 was deleted");
        assertEquals(2L << 20, c0.path("namespaces").get(1).path("size_bytes").asLong());
        assertTrue(all.get(1).path("attached_as").isNull());
        assertEquals(
                all.get(0), call("nvme_get_controllers", "{\"name\":\"fast\"}").get(0), "by attach name");
        assertEquals(
                all.get(1), call("nvme_get_controllers", "{\"name\":\"nvme1\"}").get(0), "by kernel name");
    }

    @Test
    void shouldReportHugepagesAndGiveThemBackWhenReserved() throws Exception {
        // the fake pool's files do not move "free" as the kernel would: the master raises the pool and says it fell
        // short; the real arena cannot get huge pages that the real kernel does not have either
        start(config("").replace("hugepages: {enabled: false}", "hugepages: {reserve: 2}"));

        JsonNode report = call("framework_get_hugepages", null);

        assertEquals(2, report.path("requested").asInt());
        assertEquals(2, report.path("added").asInt());
        assertEquals(0, report.path("reserved").asInt());
        assertEquals(3, report.path("pool_pages").asInt(), "1 + 2");
        assertEquals(0, report.path("free").asInt());
        assertTrue(report.path("node").isNull());
        assertEquals(2097152, report.path("hugepage_size_bytes").asInt());
        assertTrue(report.path("arena_size_bytes").asLong() >= 4L << 20, "reserve 2 pages: at least a 4 MiB arena");
        String reason = report.path("fallback_reason").asText();
        assertNotNull(reason);
        assertTrue(reason.contains("0 of 2 free"), reason);
        master.shutdown("test");
        assertEquals("1", Files.readString(proc.resolve("sys/vm/nr_hugepages")).strip(), "given back");
    }

    @Test
    void shouldReportNoReservationWhenNoneRequested() throws Exception {
        start(config(""));

        JsonNode report = call("framework_get_hugepages", null);

        assertEquals(0, report.path("requested").asInt());
        assertEquals(0, report.path("added").asInt());
        assertFalse(report.path("arena_on_hugepages").asBoolean());
        assertEquals(
                "hugepages disabled in config", report.path("fallback_reason").asText());
    }
}
