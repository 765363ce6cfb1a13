package io.vhostd.dist;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * Where the integration tests find the repository, the jar under test and their log directory.
 *
 * <p>Failsafe sets the system properties {@code vhostd.root} (repository root) and {@code vhostd.jar}
 * ({@code dist/target/vhostd.jar}), see {@code dist/pom.xml}. Run from an IDE without them, the working
 * directory is taken to be {@code dist/}.
 *
 * @param repoRoot the repository root (holds {@code bin/} and {@code tests/vm/})
 * @param jar the shaded jar that {@code bin/vhostd} runs
 * @param logDir {@code dist/target/it-logs/<test class>}: master, QEMU and guest logs of the last run
 */
record ItEnv(Path repoRoot, Path jar, Path logDir) {

    static ItEnv forTest(Class<?> testClass) {
        Path root = Path.of(System.getProperty(
                        "vhostd.root", Path.of("").toAbsolutePath().getParent().toString()))
                .toAbsolutePath()
                .normalize();
        Path jar = Path.of(System.getProperty(
                        "vhostd.jar", root.resolve("dist/target/vhostd.jar").toString()))
                .toAbsolutePath()
                .normalize();
        Path logDir = jar.getParent().resolve("it-logs").resolve(testClass.getSimpleName());
        try {
            Files.createDirectories(logDir);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create " + logDir, e);
        }
        return new ItEnv(root, jar, logDir);
    }

    /** A path inside the repository, e.g. {@code tests/vm/run-guest.sh}. */
    Path repoPath(String relative) {
        return repoRoot.resolve(relative);
    }

    /**
     * A private copy of {@link #jar()} for the processes a test starts, made once per test JVM (deleted when it
     * exits): a JVM loads classes from its jar lazily, so a rebuild of {@code dist/target/vhostd.jar} while a
     * test runs (another build on the same tree) would break the master with {@code NoClassDefFoundError}.
     */
    Path launchJar() throws IOException {
        synchronized (ItEnv.class) {
            Path copy = workDir().resolve("vhostd-it-" + ProcessHandle.current().pid() + ".jar");
            if (!Files.exists(copy)) {
                Path partial = workDir().resolve(copy.getFileName() + ".partial");
                Files.copy(jar, partial, StandardCopyOption.REPLACE_EXISTING);
                Files.move(partial, copy, StandardCopyOption.ATOMIC_MOVE);
                copy.toFile().deleteOnExit();
            }
            return copy;
        }
    }

    /** Scratch space on disk (not tmpfs) for disk images: {@code dist/target/it-work}. */
    Path workDir() throws IOException {
        return Files.createDirectories(jar.getParent().resolve("it-work"));
    }
}
