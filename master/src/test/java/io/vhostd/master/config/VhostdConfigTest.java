package io.vhostd.master.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

@Timeout(10)
class VhostdConfigTest {
    @TempDir
    Path dir;

    /** An existing 4096-byte file, for the size checks. */
    private Path existing;

    @BeforeEach
    void createFiles() throws IOException {
        existing = dir.resolve("existing.img");
        Files.write(existing, new byte[4096]);
    }

    /** Replaces $DIR with the temp directory. */
    private String yaml(String text) {
        return text.replace("$DIR", dir.toString());
    }

    private static final String BDEV =
            "bdevs:\n  - {name: disk0, type: file, path: $DIR/disk0.img, size_bytes: 1048576}\n";

    @Test
    void shouldApplyEveryDefaultWhenFileIsEmpty() throws Exception {
        VhostdConfig config = VhostdConfig.parse("");
        assertEquals(
                new VhostdConfig(
                        "/run/vhostd",
                        "/run/vhostd/rpc.sock",
                        new HugepagesConfig(true, 67108864),
                        List.of(),
                        List.of(),
                        new SlaveConfig(
                                List.of(),
                                128,
                                SlaveConfig.DEFAULT_ORPHAN_TIMEOUT_MS,
                                SlaveConfig.DEFAULT_STANDBY_DELAY_MS,
                                null)),
                config);
    }

    @Test
    void shouldReadEveryKeyWhenAllAreGiven() throws Exception {
        VhostdConfig config = VhostdConfig.parse(yaml("""
                run_dir: $DIR/run
                rpc_socket: ctl.sock
                hugepages: {enabled: false, arena_size_bytes: 4194304}
                bdevs:
                  - name: disk0
                    type: file
                    path: $DIR/disk0.img
                    size_bytes: 1073741824
                    read_only: false
                    direct: true
                    block_size: 4096
                  - {name: ro, type: file, path: $DIR/existing.img, read_only: true}
                controllers:
                  - name: vhost-blk0
                    type: vhost-user-blk
                    bdev: disk0
                    socket: /tmp/vb0.sock
                    num_queues: 4
                    queue_size_max: 256
                    serial: SN0001
                    read_only: true
                  - {name: a-very-long-controller-name-0, type: vhost-user-blk, bdev: ro, socket: vb1.sock}
                slave:
                  java_opts: [-Xmx256m, -XX:+UseZGC]
                  max_segments: 64
                  orphan_timeout_ms: 5000
                  standby_delay_ms: 250
                  aot_cache: /var/tmp/vhostd-aot
                """));
        String d = dir.toString();
        assertEquals(
                new VhostdConfig(
                        d + "/run",
                        d + "/run/ctl.sock",
                        new HugepagesConfig(false, 4194304),
                        List.of(
                                new BdevConfig("disk0", "file", d + "/disk0.img", 1073741824L, false, true, 4096),
                                new BdevConfig("ro", "file", d + "/existing.img", 4096, true, false, 512)),
                        List.of(
                                new ControllerConfig(
                                        "vhost-blk0",
                                        "vhost-user-blk",
                                        "disk0",
                                        "/tmp/vb0.sock",
                                        4,
                                        256,
                                        "SN0001",
                                        true),
                                new ControllerConfig(
                                        "a-very-long-controller-name-0",
                                        "vhost-user-blk",
                                        "ro",
                                        d + "/run/vb1.sock",
                                        1,
                                        1024,
                                        "a-very-long-controll",
                                        true)),
                        new SlaveConfig(List.of("-Xmx256m", "-XX:+UseZGC"), 64, 5_000, 250, "/var/tmp/vhostd-aot")),
                config);
    }

    @Test
    void shouldTurnTheAotCacheOffWhenItSaysOffWithOrWithoutQuotes() throws Exception {
        assertEquals(
                "off", VhostdConfig.parse("slave: {aot_cache: off}\n").slave().aotCache());
        assertEquals(
                "off",
                VhostdConfig.parse("slave: {aot_cache: \"off\"}\n").slave().aotCache());
        assertEquals(null, VhostdConfig.parse("slave: {}\n").slave().aotCache());
    }

    @Test
    void shouldReadEveryBdevTypeWhenEachIsGiven() throws Exception {
        VhostdConfig config = VhostdConfig.parse(yaml("""
                registry_path: state/reg.dat
                hugepages: {reserve: 8, node: 0}
                bdevs:
                  - {name: f, type: file, path: $DIR/existing.img, direct: true}
                  - {name: nv, type: nvme, traddr: "0000:01:00.0", read_only: true}
                  - {name: nv2, type: nvme, device: /dev/nvme3}
                  - {name: z, type: null, num_blocks: 1024, block_size: 4096}
                  - {name: m, type: malloc, size_bytes: 1048576}
                controllers:
                  - {name: c0, type: vhost-user-blk, bdev: nvn1, socket: c0.sock}
                """));
        assertEquals("/run/vhostd/state/reg.dat", config.registryPath());
        assertEquals(new HugepagesConfig(true, 8L << 21, 8, 0), config.hugepages());
        assertEquals(
                List.of(
                        new BdevConfig("f", "file", dir + "/existing.img", 4096, false, true, 512),
                        new BdevConfig("nv", "nvme", null, 0, true, false, 512, null, "0000:01:00.0"),
                        new BdevConfig("nv2", "nvme", null, 0, false, false, 512, "nvme3", null),
                        new BdevConfig("z", "null", null, 4L << 20, false, false, 4096),
                        new BdevConfig("m", "malloc", null, 1L << 20, false, false, 512)),
                config.bdevs());
        assertEquals(1024, config.bdev("z").orElseThrow().numBlocks());
        // an nvme entry's namespaces are bdevs <name>n<nsid>; the controller's read_only follows the nvme entry
        assertEquals(true, config.controller("c0").orElseThrow().readOnly());
        assertEquals(config, VhostdConfig.parse(config.toYaml()));
    }

    @Test
    void shouldValidateOneBdevLikeTheFileWhenParsedAlone() throws Exception {
        com.fasterxml.jackson.databind.node.ObjectNode entry =
                new com.fasterxml.jackson.databind.ObjectMapper().createObjectNode();
        entry.put("name", "z").put("type", "null").put("num_blocks", 8).put("block_size", 4096);
        BdevConfig parsed = VhostdConfig.parseBdev(entry);
        assertEquals(new BdevConfig("z", "null", null, 32768, false, false, 4096), parsed);
        assertEquals(parsed, VhostdConfig.parseBdev(VhostdConfig.bdevToTree(parsed)));
        entry.put("block_size", 100);
        ConfigException e = assertThrows(ConfigException.class, () -> VhostdConfig.parseBdev(entry));
        assertEquals("block_size", e.keyPath());
    }

    @Test
    void shouldLoadFromFileWhenPathGiven() throws Exception {
        Path file = dir.resolve("vhostd.yaml");
        Files.writeString(
                file, yaml(BDEV + "controllers: [{name: c0, type: vhost-user-blk, bdev: disk0, socket: c0.sock}]\n"));
        VhostdConfig config = VhostdConfig.load(file);
        assertEquals(
                "/run/vhostd/c0.sock", config.controller("c0").orElseThrow().socket());
        assertEquals(1048576, config.bdev("disk0").orElseThrow().sizeBytes());
    }

    @Test
    void shouldRoundTripDefaultsWhenWrittenAsYaml() throws Exception {
        VhostdConfig defaults = VhostdConfig.defaults(dir);
        assertEquals(1, defaults.bdevs().size());
        assertEquals(1L << 30, defaults.bdevs().get(0).sizeBytes());
        assertEquals(2, defaults.controllers().get(0).numQueues());
        assertTrue(defaults.controllers().get(0).socket().startsWith(dir.toString()));
        assertEquals(defaults, VhostdConfig.parse(defaults.toYaml()));
    }

    @Test
    void shouldNotCutACharacterWhenSerialDefaultIsTruncated() {
        assertEquals("abc", VhostdConfig.truncateUtf8("abc", 20));
        assertEquals("é".repeat(10), VhostdConfig.truncateUtf8("é".repeat(11), 20));
        assertEquals("a" + "é".repeat(9), VhostdConfig.truncateUtf8("a" + "é".repeat(10), 20));
    }

    static Stream<Arguments> badConfigs() {
        String c0 = "controllers:\n  - {name: c0, type: vhost-user-blk, bdev: disk0, socket: c0.sock";
        return Stream.of(
                Arguments.of(
                        "bogus: 1\n",
                        "bogus: unknown key (expected one of: bdevs, controllers, hugepages, prometheus, registry_path, rpc_socket, rpc_socket_group, rpc_socket_mode, run_dir, slave)"),
                Arguments.of("- a\n- b\n", "(top level): must be a mapping, not a list"),
                Arguments.of("run_dir: relative/dir\n", "run_dir: must be an absolute path, not 'relative/dir'"),
                Arguments.of("run_dir: 5\n", "run_dir: must be a string, not 5"),
                Arguments.of(
                        "rpc_socket: /" + "s".repeat(120) + "\n",
                        "rpc_socket: '/" + "s".repeat(120)
                                + "' is 121 bytes, longer than the 107 a unix socket path may have (sun_path)"),
                Arguments.of(
                        "hugepages: {enabled: yes please}\n",
                        "hugepages.enabled: must be true or false, not 'yes please'"),
                Arguments.of(
                        "hugepages: {arena_size_bytes: 1000}\n",
                        "hugepages.arena_size_bytes: must be a positive multiple of 2097152 (2 MiB huge page), not 1000"),
                Arguments.of(
                        "hugepages: {size: 2}\n",
                        "hugepages.size: unknown key (expected one of: arena_size_bytes, enabled, node, reserve)"),
                Arguments.of("hugepages: 7\n", "hugepages: must be a mapping, not 7"),
                Arguments.of("bdevs: {name: disk0}\n", "bdevs: must be a list, not a mapping"),
                Arguments.of("bdevs: [{type: file, path: $DIR/a, size_bytes: 512}]\n", "bdevs[0].name: missing"),
                Arguments.of(
                        "bdevs: [{name: 'a b', type: file, path: $DIR/a, size_bytes: 512}]\n",
                        "bdevs[0].name: 'a b' must be 1 to 64 characters of A-Z a-z 0-9 . _ : -"),
                Arguments.of("bdevs: [{name: d, path: $DIR/a, size_bytes: 512}]\n", "bdevs[0].type: missing"),
                Arguments.of(
                        "bdevs: [{name: d, type: nvme, path: $DIR/a}]\n",
                        "bdevs[0].path: does not apply to type nvme (its keys: device, direct, name, read_only, traddr,"
                                + " type)"),
                Arguments.of("bdevs: [{name: d, type: nvme}]\n", "bdevs[0].traddr: missing (give traddr or device)"),
                Arguments.of(
                        "bdevs: [{name: d, type: nvme, device: nvme0, traddr: '0000:01:00.0'}]\n",
                        "bdevs[0].device: give device or traddr, not both"),
                Arguments.of(
                        "bdevs: [{name: d, type: nvme, device: sda}]\n",
                        "bdevs[0].device: 'sda' is not an NVMe controller name like nvme0"),
                Arguments.of(
                        "bdevs: [{name: d, type: malloc}]\n",
                        "bdevs[0].num_blocks: missing (give num_blocks or size_bytes)"),
                Arguments.of(
                        "bdevs: [{name: d, type: malloc, num_blocks: 0}]\n",
                        "bdevs[0].num_blocks: must be between 1 and 2199023255552, not 0"),
                Arguments.of(
                        "bdevs: [{name: d, type: null, num_blocks: 2, size_bytes: 512}]\n",
                        "bdevs[0].size_bytes: 512 differs from num_blocks * block_size (1024)"),
                Arguments.of(
                        "bdevs: [{name: d, type: null, size_bytes: 1000}]\n",
                        "bdevs[0].size_bytes: must be a positive multiple of 512 (block_size) up to 1125899906842624,"
                                + " not 1000"),
                Arguments.of(
                        "bdevs: [{name: d, type: null, num_blocks: 8, direct: true}]\n",
                        "bdevs[0].direct: does not apply to type null (its keys: block_size, name, num_blocks,"
                                + " read_only, size_bytes, type)"),
                Arguments.of(
                        "bdevs: [{name: d, type: block, path: $DIR/existing.img}]\n",
                        "bdevs[0].path: '$DIR/existing.img' is not a block device"),
                Arguments.of(
                        "bdevs: [{name: d, type: block, path: /dev/null, size_bytes: 512}]\n",
                        "bdevs[0].size_bytes: does not apply to type block (its keys: block_size, direct, name, path,"
                                + " read_only, type)"),
                Arguments.of(
                        "hugepages: {enabled: false, reserve: 4}\n",
                        "hugepages.reserve: huge pages are reserved for the arena, which has them disabled (enabled:"
                                + " false)"),
                Arguments.of(
                        "hugepages: {node: 0}\n", "hugepages.node: names the pool to reserve from, but reserve is 0"),
                Arguments.of("hugepages: {reserve: -1}\n", "hugepages.reserve: must be between 0 and 524288, not -1"),
                Arguments.of("registry_path: ''\n", "registry_path: must not be empty"),
                Arguments.of(
                        "bdevs: [{name: d, type: nvme, traddr: 0000:01:00.0}]\n",
                        "line 1, column 51: YAML syntax error: Malformed numeric value '0000:01:00.0' (quote a value"
                                + " like this: traddr: \"0000:01:00.0\")"),
                Arguments.of(
                        "bdevs: [{name: d, type: tape, path: $DIR/a}]\n",
                        "bdevs[0].type: unknown type 'tape' (block, file, malloc, nvme, null)"),
                Arguments.of("bdevs: [{name: d, type: file, size_bytes: 512}]\n", "bdevs[0].path: missing"),
                Arguments.of(
                        "bdevs: [{name: d, type: file, path: a.img, size_bytes: 512}]\n",
                        "bdevs[0].path: must be an absolute path, not 'a.img'"),
                Arguments.of(
                        "bdevs: [{name: d, type: file, path: $DIR/a, size_bytes: 1000}]\n",
                        "bdevs[0].size_bytes: must be a multiple of 512 (block_size), not 1000"),
                Arguments.of(
                        "bdevs: [{name: d, type: file, path: $DIR/a, size_bytes: 0}]\n",
                        "bdevs[0].size_bytes: must be positive, not 0"),
                Arguments.of(
                        "bdevs: [{name: d, type: file, path: $DIR/a, size_bytes: 1G}]\n",
                        "bdevs[0].size_bytes: must be an integer, not '1G'"),
                Arguments.of(
                        "bdevs: [{name: d, type: file, path: $DIR/a}]\n",
                        "bdevs[0].size_bytes: missing (file '$DIR/a' does not exist, so its size must be given)"),
                Arguments.of(
                        "bdevs: [{name: d, type: file, path: $DIR/existing.img, size_bytes: 8192}]\n",
                        "bdevs[0].size_bytes: 8192 differs from the size of the existing file '$DIR/existing.img' (4096 bytes)"),
                Arguments.of(
                        "bdevs: [{name: d, type: file, path: $DIR/existing.img, block_size: 8192}]\n",
                        "bdevs[0].block_size: must be 512, 1024, 2048 or 4096, not 8192"),
                Arguments.of(
                        "bdevs: [{name: d, type: file, path: $DIR, size_bytes: 512}]\n",
                        "bdevs[0].path: '$DIR' exists and is not a regular file"),
                Arguments.of(
                        "bdevs: [{name: d, type: file, path: $DIR/a, size_bytes: 512, read_only: true}]\n",
                        "bdevs[0].path: file '$DIR/a' does not exist, and a read_only bdev cannot create it"),
                Arguments.of(
                        "bdevs: [{name: d, type: file, path: $DIR/a, size_bytes: 512, sizebytes: 512}]\n",
                        "bdevs[0].sizebytes: unknown key (expected one of: block_size, device, direct, name, num_blocks, path, read_only, size_bytes, traddr, type)"),
                Arguments.of(
                        BDEV + "  - {name: disk0, type: file, path: $DIR/b, size_bytes: 512}\n",
                        "bdevs[1].name: duplicate name 'disk0' (also bdevs[0])"),
                Arguments.of(
                        BDEV + "controllers:\n  - {name: c0, type: vhost-user-blk, bdev: disk9, socket: c0.sock}\n",
                        "controllers[0].bdev: no bdev named 'disk9'"),
                Arguments.of(
                        BDEV + "controllers:\n  - {name: c0, type: vhost-user-blk, bdev: disk0}\n",
                        "controllers[0].socket: missing"),
                Arguments.of(
                        BDEV + "controllers:\n  - {name: c0, bdev: disk0, socket: c.sock}\n",
                        "controllers[0].type: missing"),
                Arguments.of(
                        BDEV + "controllers:\n  - {name: c0, type: vhost-user-scsi, bdev: disk0, socket: c.sock}\n",
                        "controllers[0].type: unknown type 'vhost-user-scsi' (vhost-user-blk)"),
                Arguments.of(
                        BDEV + c0 + ", num_queues: 0}\n", "controllers[0].num_queues: must be between 1 and 64, not 0"),
                Arguments.of(
                        BDEV + c0 + ", num_queues: 65}\n",
                        "controllers[0].num_queues: must be between 1 and 64, not 65"),
                Arguments.of(
                        BDEV + c0 + ", queue_size_max: 1000}\n",
                        "controllers[0].queue_size_max: must be a power of two, not 1000"),
                Arguments.of(
                        BDEV + c0 + ", queue_size_max: 65536}\n",
                        "controllers[0].queue_size_max: must be between 1 and 32768, not 65536"),
                Arguments.of(
                        BDEV + c0 + ", serial: 123456789012345678901}\n",
                        "controllers[0].serial: must be a string, not 123456789012345678901"),
                Arguments.of(
                        BDEV + c0 + ", serial: '123456789012345678901'}\n",
                        "controllers[0].serial: longer than 20 bytes (VIRTIO_BLK_ID_BYTES)"),
                Arguments.of(
                        BDEV + c0 + ", socket2: x}\n",
                        "controllers[0].socket2: unknown key (expected one of: bdev, name, num_queues, queue_size_max, read_only, serial, socket, type)"),
                Arguments.of(
                        BDEV + c0 + "}\n  - {name: c0, type: vhost-user-blk, bdev: disk0, socket: c1.sock}\n",
                        "controllers[1].name: duplicate name 'c0' (also controllers[0])"),
                Arguments.of(
                        BDEV + c0 + "}\n  - {name: c1, type: vhost-user-blk, bdev: disk0, socket: c1.sock}\n",
                        "controllers[1].bdev: bdev 'disk0' is already served by controller 'c0'"),
                Arguments.of(
                        BDEV + "  - {name: disk1, type: file, path: $DIR/b, size_bytes: 512}\n" + c0
                                + "}\n  - {name: c1, type: vhost-user-blk, bdev: disk1, socket: /run/vhostd/c0.sock}\n",
                        "controllers[1].socket: '/run/vhostd/c0.sock' is already used by another socket"),
                Arguments.of(
                        BDEV + "controllers:\n  - {name: c0, type: vhost-user-blk, bdev: disk0, socket: rpc.sock}\n",
                        "controllers[0].socket: '/run/vhostd/rpc.sock' is already used by another socket"),
                Arguments.of(
                        "bdevs: [{name: d, type: file, path: $DIR/existing.img, read_only: true}]\ncontrollers: [{name: c, type: vhost-user-blk, bdev: d, socket: c.sock, read_only: false}]\n",
                        "controllers[0].read_only: false, but bdev 'd' is read-only"),
                Arguments.of("slave: {java_opts: -Xmx1g}\n", "slave.java_opts: must be a list, not '-Xmx1g'"),
                Arguments.of("slave: {java_opts: [1]}\n", "slave.java_opts[0]: must be a string, not 1"),
                Arguments.of("slave: {max_segments: 0}\n", "slave.max_segments: must be between 1 and 1024, not 0"),
                Arguments.of(
                        "slave: {aot_cache: var/cache}\n",
                        "slave.aot_cache: must be an absolute directory or off, not \"var/cache\""),
                Arguments.of("slave: {aot_cache: 1}\n", "slave.aot_cache: must be a string, not 1"),
                Arguments.of("slave: {aot_cache: on}\n", "slave.aot_cache: must be a string, not true"),
                Arguments.of(
                        "run_dir: /a\nrun_dir: /b\n", "line 2, column 8: YAML syntax error: Duplicate field 'run_dir'"),
                Arguments.of(
                        "bdevs:\n  - name: d\n   type: file\n",
                        "line 3, column 4: YAML syntax error: expected <block end>, but found '<block mapping start>' (while parsing a block collection)"),
                Arguments.of(
                        "run_dir: [/a\n",
                        "line 2, column 1: YAML syntax error: expected ',' or ']', but got <stream end> (while parsing a flow sequence)"),
                Arguments.of(
                        "run_dir: /a\n---\nrun_dir: /b\n",
                        "more than one YAML document; a configuration is one document"));
    }

    @ParameterizedTest(name = "{1}")
    @MethodSource("badConfigs")
    void shouldNameTheKeyWhenConfigIsBad(String text, String message) {
        ConfigException e = assertThrows(ConfigException.class, () -> VhostdConfig.parse(yaml(text)));
        assertEquals(yaml(message), e.getMessage());
    }

    @Test
    void shouldSayWhyWhenFileCannotBeRead() {
        ConfigException e = assertThrows(ConfigException.class, () -> VhostdConfig.load(dir.resolve("none.yaml")));
        assertTrue(e.getMessage().startsWith("cannot read " + dir.resolve("none.yaml")), e.getMessage());
        assertEquals("", e.keyPath());
    }

    @Test
    void shouldExposeKeyPathAndProblemWhenThrown() {
        ConfigException e = assertThrows(
                ConfigException.class,
                () -> VhostdConfig.parse(
                        yaml(BDEV + "controllers: [{name: c, type: vhost-user-blk, bdev: x, socket: s}]")));
        assertEquals("controllers[0].bdev", e.keyPath());
        assertEquals("no bdev named 'x'", e.problem());
    }
}
