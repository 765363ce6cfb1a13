package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.master.MasterMain;
import io.vhostd.master.config.VhostdConfig;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code systemd/}: {@code install.sh --destdir} into a temp directory (with a stand-in jar), the installed layout,
 * what the unit promises (Type=notify, watchdog, KillMode, resources, no MemoryDenyWriteExecute), the back-end
 * descriptor against vhost-user.json, the default configuration against the config parser, and {@code systemd-analyze
 * verify} of the installed unit (skipped only where systemd-analyze is not installed).
 */
@Timeout(120)
class SystemdFilesTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    private Path repo;
    private Path jar;

    @BeforeEach
    void findRepo() throws IOException {
        Path p = Path.of("").toAbsolutePath();
        while (p != null && !Files.exists(p.resolve("systemd/install.sh"))) {
            p = p.getParent();
        }
        assertTrue(p != null, "no systemd/install.sh above " + Path.of("").toAbsolutePath());
        repo = p;
        jar = tmp.resolve("stand-in.jar");
        Files.writeString(jar, "not really a jar");
    }

    private record Run(int exitCode, String output) {}

    private Run run(List<String> command) throws Exception {
        Process process = new ProcessBuilder(command)
                .directory(tmp.toFile())
                .redirectErrorStream(true)
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                .start();
        String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(process.waitFor(60, TimeUnit.SECONDS), "still running: " + command);
        return new Run(process.exitValue(), output);
    }

    private Path install(String... extra) throws Exception {
        Path dest = tmp.resolve("dest");
        List<String> command = new ArrayList<>(List.of(
                repo.resolve("systemd/install.sh").toString(), "--destdir", dest.toString(), "--jar", jar.toString()));
        command.addAll(List.of(extra));
        Run r = run(command);
        assertEquals(0, r.exitCode(), r.output());
        return dest;
    }

    private static String mode(Path p) throws IOException {
        return PosixFilePermissions.toString(Files.getPosixFilePermissions(p, LinkOption.NOFOLLOW_LINKS));
    }

    @Test
    void shouldInstallEveryFileWhereSystemdQemuAndTheLauncherLookWhenPrefixIsUsr() throws Exception {
        Path dest = install();
        Map<String, String> expected = new LinkedHashMap<>();
        expected.put("usr/lib/vhostd/vhostd.jar", "rw-r--r--");
        expected.put("usr/bin/vhostd", "rwxr-xr-x");
        expected.put("usr/bin/vhostctl", "rwxr-xr-x");
        expected.put("usr/libexec/vhostd-user-blk", "rwxr-xr-x");
        expected.put("usr/lib/systemd/system/vhostd.service", "rw-r--r--");
        expected.put("usr/lib/sysctl.d/10-vhostd.conf", "rw-r--r--");
        expected.put("usr/lib/tmpfiles.d/vhostd.conf", "rw-r--r--");
        expected.put("usr/share/qemu/vhost-user/50-vhostd-blk.json", "rw-r--r--");
        expected.put("usr/share/doc/vhostd/README.md", "rw-r--r--");
        expected.put("usr/share/doc/vhostd/libvirt.md", "rw-r--r--");
        expected.put("etc/vhostd/vhostd.yaml", "rw-r-----");
        expected.put("etc/default/vhostd", "rw-r--r--");
        Set<String> installed = new TreeSet<>();
        try (Stream<Path> files = Files.walk(dest)) {
            files.filter(Files::isRegularFile)
                    .forEach(f -> installed.add(dest.relativize(f).toString()));
        }
        assertEquals(new TreeSet<>(expected.keySet()), installed);
        for (Map.Entry<String, String> e : expected.entrySet()) {
            assertEquals(e.getValue(), mode(dest.resolve(e.getKey())), e.getKey());
        }
        assertEquals("not really a jar", Files.readString(dest.resolve("usr/lib/vhostd/vhostd.jar")));
        // bin/vhostd as it is: it already looks for /usr/lib/vhostd/vhostd.jar
        assertEquals(Files.readString(repo.resolve("bin/vhostd")), Files.readString(dest.resolve("usr/bin/vhostd")));
        assertTrue(Files.readString(dest.resolve("usr/libexec/vhostd-user-blk"))
                .contains("\nVHOSTD=/usr/bin/vhostd\nexec \"$VHOSTD\" blk \"$@\"\n"));
        assertEquals(
                Files.readString(repo.resolve("systemd/vhostd.service")),
                Files.readString(dest.resolve("usr/lib/systemd/system/vhostd.service")));
    }

    @Test
    void shouldRewriteEveryPathWhenPrefixAndSysconfdirDiffer() throws Exception {
        Path dest = install("--prefix", "/opt/vhostd", "--sysconfdir", "/opt/vhostd/etc");
        String unit = Files.readString(dest.resolve("opt/vhostd/lib/systemd/system/vhostd.service"));
        assertTrue(
                unit.contains(
                        "\nExecStart=/opt/vhostd/bin/vhostd master --config /opt/vhostd/etc/vhostd/vhostd.yaml\n"),
                unit);
        assertTrue(unit.contains("\nEnvironmentFile=-/opt/vhostd/etc/default/vhostd\n"), unit);
        assertFalse(unit.contains("/usr/bin/vhostd"), unit);
        String launcher = Files.readString(dest.resolve("opt/vhostd/bin/vhostd"));
        assertTrue(launcher.contains("/opt/vhostd/lib/vhostd/vhostd.jar"), launcher);
        assertFalse(launcher.contains("/usr/lib/vhostd/vhostd.jar"), launcher);
        JsonNode descriptor = JSON.readTree(dest.resolve("opt/vhostd/share/qemu/vhost-user/50-vhostd-blk.json")
                .toFile());
        assertEquals(
                "/opt/vhostd/libexec/vhostd-user-blk", descriptor.path("binary").asText());
        assertTrue(Files.isRegularFile(dest.resolve("opt/vhostd/etc/vhostd/vhostd.yaml")));
    }

    @Test
    void shouldKeepExistingConfigurationWhenInstalledAgain() throws Exception {
        Path dest = install();
        Path config = dest.resolve("etc/vhostd/vhostd.yaml");
        Files.writeString(config, "run_dir: /run/mine\n");
        Files.writeString(dest.resolve("etc/default/vhostd"), "VHOSTD_JAVA_OPTS=-Xmx1g\n");
        Files.writeString(dest.resolve("usr/lib/vhostd/vhostd.jar"), "old jar");
        install();
        assertEquals("run_dir: /run/mine\n", Files.readString(config));
        assertEquals("VHOSTD_JAVA_OPTS=-Xmx1g\n", Files.readString(dest.resolve("etc/default/vhostd")));
        assertEquals("not really a jar", Files.readString(dest.resolve("usr/lib/vhostd/vhostd.jar")));
    }

    @Test
    void shouldRefuseWhenJarIsMissingOrArgumentUnknown() throws Exception {
        Run missing = run(List.of(
                repo.resolve("systemd/install.sh").toString(),
                "--destdir",
                tmp.resolve("d1").toString(),
                "--jar",
                tmp.resolve("nope.jar").toString()));
        assertEquals(1, missing.exitCode());
        assertTrue(missing.output().contains("no jar at"), missing.output());
        Run unknown = run(List.of(repo.resolve("systemd/install.sh").toString(), "--destdr", "x"));
        assertEquals(1, unknown.exitCode());
        assertTrue(unknown.output().contains("unknown argument: --destdr"), unknown.output());
        Run relative =
                run(List.of(repo.resolve("systemd/install.sh").toString(), "--prefix", "usr", "--jar", jar.toString()));
        assertEquals(1, relative.exitCode());
    }

    @Test
    void shouldDescribeBlockBackEndAsVhostUserJsonDefinesWhenDescriptorRead() throws Exception {
        JsonNode d = JSON.readTree(repo.resolve("systemd/50-vhostd-blk.json").toFile());
        // vhost-user.json VhostUserBackend: description (str), type (VHostUserBackendType), binary (str), *tags
        Set<String> keys = new TreeSet<>();
        d.fieldNames().forEachRemaining(keys::add);
        assertEquals(Set.of("binary", "description", "type"), keys);
        assertEquals("block", d.path("type").asText());
        assertEquals("/usr/libexec/vhostd-user-blk", d.path("binary").asText());
        assertFalse(d.path("description").asText().isBlank());
    }

    @Test
    void shouldParseDefaultConfigurationWithSystemdLayoutWhenInstalled() throws Exception {
        VhostdConfig config = VhostdConfig.load(repo.resolve("systemd/vhostd.yaml"));
        assertEquals("/run/vhostd/master", config.runDir());
        assertEquals("/run/vhostd/rpc.sock", config.rpcSocket());
        assertEquals("/var/lib/vhostd/registry.dat", config.registryPath());
        assertTrue(config.bdevs().isEmpty());
        assertTrue(config.controllers().isEmpty());
    }

    @Test
    void shouldPromiseNotifyWatchdogAndMasterFirstStopWhenUnitRead() throws Exception {
        Map<String, List<String>> unit = unitSettings(repo.resolve("systemd/vhostd.service"));
        assertEquals(List.of("notify"), unit.get("Type"));
        assertEquals(List.of("main"), unit.get("NotifyAccess"));
        assertEquals(List.of("/usr/bin/vhostd master --config /etc/vhostd/vhostd.yaml"), unit.get("ExecStart"));
        assertEquals(List.of("30s"), unit.get("WatchdogSec"));
        assertEquals(List.of("on-failure"), unit.get("Restart"));
        assertEquals(List.of("" + MasterMain.EXIT_CONFIG), unit.get("RestartPreventExitStatus"));
        // SIGTERM to the master alone; it stops the slave itself
        assertEquals(List.of("process"), unit.get("KillMode"));
        assertEquals(List.of("143"), unit.get("SuccessExitStatus"));
        assertEquals(List.of("vhostd"), unit.get("RuntimeDirectory"));
        assertEquals(List.of("0750"), unit.get("RuntimeDirectoryMode"));
        assertEquals(List.of("infinity"), unit.get("LimitMEMLOCK"));
        // the JIT writes code: W^X would kill the JVM; PrivateDevices/ProtectKernelTunables/ProtectClock would take
        // away block devices and the huge page pool; RestrictRealtime the handover threads' SCHED_FIFO
        for (String forbidden : List.of(
                "RestrictRealtime",
                "MemoryDenyWriteExecute",
                "PrivateDevices",
                "ProtectKernelTunables",
                "ProtectClock",
                "DevicePolicy",
                "SystemCallFilter")) {
            assertFalse(unit.containsKey(forbidden), forbidden);
        }
        assertEquals(List.of("multi-user.target"), unit.get("WantedBy"));
    }

    @Test
    void shouldHaveValidSysctlAndTmpfilesLinesWhenSnippetsRead() throws Exception {
        List<String> sysctl = settingLines(repo.resolve("systemd/vhostd.conf"));
        assertEquals(List.of("vm.nr_hugepages = 32"), sysctl);
        List<String> tmpfiles = settingLines(repo.resolve("systemd/vhostd-tmpfiles.conf"));
        assertEquals(List.of("d /run/vhostd 0750 root kvm -", "d /var/lib/vhostd 0700 root root -"), tmpfiles);
    }

    @Test
    void shouldPassSystemdAnalyzeVerifyWhenInstalledIntoRoot() throws Exception {
        assumeTrue(onPath("systemd-analyze"), "systemd-analyze is not installed");
        Path dest = install();
        // verify --root loads the unit's dependencies (sysinit.target, multi-user.target, ...) from the root: give it
        // the host's unit files (top level only: the .wants/ directories hold symlinks that point out of the root)
        Path hostUnits = Path.of("/usr/lib/systemd/system");
        Path rootUnits = dest.resolve("usr/lib/systemd/system");
        try (Stream<Path> units = Files.list(hostUnits)) {
            for (Path u : units.toList()) {
                Path target = rootUnits.resolve(u.getFileName());
                if (Files.isRegularFile(u) && !Files.exists(target)) {
                    Files.copy(u, target);
                }
            }
        }
        Run r = run(List.of("systemd-analyze", "verify", "--man=no", "--root=" + dest, "vhostd.service"));
        List<String> about =
                r.output().lines().filter(l -> l.contains("vhostd")).toList();
        assertEquals(List.of(), about, r.output());
        assertEquals(0, r.exitCode(), r.output());
    }

    @Test
    void shouldCreateRunAndStateDirectoriesWhenSystemdTmpfilesApplySnippet() throws Exception {
        assumeTrue(onPath("systemd-tmpfiles"), "systemd-tmpfiles is not installed");
        assumeTrue("root".equals(System.getProperty("user.name")), "creating root:kvm directories needs root");
        Path root = tmp.resolve("root");
        Files.createDirectories(root.resolve("etc"));
        Files.writeString(root.resolve("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
        Files.writeString(root.resolve("etc/group"), "root:x:0:\nkvm:x:4242:\n");
        Path snippet = root.resolve("usr/lib/tmpfiles.d/vhostd.conf");
        Files.createDirectories(snippet.getParent());
        Files.copy(repo.resolve("systemd/vhostd-tmpfiles.conf"), snippet);
        Run r = run(List.of("systemd-tmpfiles", "--root=" + root, "--create", snippet.toString()));
        assertEquals(0, r.exitCode(), r.output());
        assertEquals("", r.output());
        assertEquals("rwxr-x---", mode(root.resolve("run/vhostd")));
        assertEquals(4242, Files.getAttribute(root.resolve("run/vhostd"), "unix:gid"));
        assertEquals("rwx------", mode(root.resolve("var/lib/vhostd")));
    }

    private static boolean onPath(String command) {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            if (Files.isExecutable(Path.of(dir, command))) {
                return true;
            }
        }
        return false;
    }

    /** Non-comment, non-blank lines, trimmed. */
    private static List<String> settingLines(Path file) throws IOException {
        return Files.readAllLines(file).stream()
                .map(String::strip)
                .filter(l -> !l.isEmpty() && !l.startsWith("#"))
                .toList();
    }

    /** KEY=VALUE lines of a unit file (any section), every value of each key in order. */
    private static Map<String, List<String>> unitSettings(Path unit) throws IOException {
        Map<String, List<String>> settings = new LinkedHashMap<>();
        for (String line : settingLines(unit)) {
            if (line.startsWith("[")) {
                continue;
            }
            int eq = line.indexOf('=');
            settings.computeIfAbsent(line.substring(0, eq), k -> new ArrayList<>())
                    .add(line.substring(eq + 1));
        }
        return settings;
    }
}
