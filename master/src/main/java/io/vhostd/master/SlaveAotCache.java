package io.vhostd.master;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileTime;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/**
 * The slaves' AOT cache (issue #4): JDK 25's ahead-of-time cache (JEPs 483, 514, 515) holds the classes a slave loads
 * and links and the method profiles of its warm-up, so that a slave starts with them instead of loading, linking and
 * profiling them again. Measured on this project's 2-CPU machine (docs/benchmarks.md, session 7): the standby warm-up
 * took 2.0 s wall / 3.7 s CPU with the cache against 2.6 s / 4.8 s without, and the control codec made 25,500 round
 * trips in its 1 s budget against 11,500 - 13,800 (its JIT had the profiles).
 *
 * <p>One cache file per slave command line: {@code slave-<key>.aot} in the cache directory, {@code <key>} a hash of
 * the JVM's version, the slave's JVM options (not {@code -D} system properties, which do not change what is cached)
 * and each class path entry's path, size and modification time. A slave is spawned with {@code -XX:AOTCache=<file>}
 * when the file exists ({@link #options}). A missing one is made in the background ({@link #trainInBackground}): a
 * JVM with the slave's options and {@code -XX:AOTCacheOutput} runs {@code io.vhostd.slave.SlaveAotTraining} (the
 * standby's warm-up, scratch memory only) and writes it at exit; its output goes to {@code slave-<key>.log}. The JVM
 * itself checks a cache against the class path it runs with and ignores (with a warning) one that does not match.
 * The {@value #KEEP} most recently used files are kept. Thread-safe.
 */
final class SlaveAotCache implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(SlaveAotCache.class.getName());

    /** The training run's main class (slave module). */
    static final String TRAINING_MAIN = "io.vhostd.slave.SlaveAotTraining";

    /** Cache files kept in the directory (the most recently used). */
    static final int KEEP = 4;

    /** How long a training run may take before it is stopped. */
    static final long TRAINING_TIMEOUT_MS = 600_000;

    /**
     * The training JVM's nice value. At nice 0 it took 10 - 13 s of both CPUs beside a TCG guest, and a slave hurried
     * meanwhile (SlaveKillIT) resumed 2.3 s after the kill instead of 0.2 - 0.7 s. At a low priority it takes longer;
     * it loads the same classes, and its codec rounds run to the end, but on a busy machine its rehearsals (3 s of
     * wall time each at most) may send fewer requests through the data path.
     */
    static final int TRAINING_NICE = 19;

    /** Default cache directory ({@code systemd/vhostd.service}: {@code CacheDirectory=vhostd}). */
    static final Path DEFAULT_DIR = Path.of("/var/cache/vhostd/aot");

    /** The cache directory; null: no cache. */
    private final Path dir;

    /** Keys with a training run under way. */
    private final Set<String> training = ConcurrentHashMap.newKeySet();

    /** Training processes under way, stopped by {@link #close}; guarded by itself, as is {@link #closed}. */
    private final Set<Process> running = new java.util.HashSet<>();

    private boolean closed;

    /** Numbers each training run's temporary file name. */
    private final java.util.concurrent.atomic.AtomicInteger runs = new java.util.concurrent.atomic.AtomicInteger();

    SlaveAotCache(Path dir) {
        this.dir = dir;
    }

    /**
     * The cache of {@code slave.aot_cache}: {@code "off"}: none; a directory: that one (created); null (absent):
     * {@link #DEFAULT_DIR}, or {@code <runDir>/aot} when that cannot be created (not root). A directory that cannot be
     * created is logged and the slaves run without a cache.
     */
    static SlaveAotCache open(String configured, Path runDir) {
        if ("off".equals(configured)) {
            return new SlaveAotCache(null);
        }
        List<Path> candidates =
                configured != null ? List.of(Path.of(configured)) : List.of(DEFAULT_DIR, runDir.resolve("aot"));
        for (Path candidate : candidates) {
            try {
                Files.createDirectories(candidate);
                if (Files.isWritable(candidate)) {
                    return new SlaveAotCache(candidate);
                }
            } catch (IOException e) {
                LOG.log(System.Logger.Level.DEBUG, "AOT cache directory " + candidate + ": " + e);
            }
        }
        LOG.log(
                System.Logger.Level.WARNING,
                "no writable AOT cache directory (" + candidates + "): slaves start without");
        return new SlaveAotCache(null);
    }

    /** The cache directory, or null when there is no cache. */
    Path dir() {
        return dir;
    }

    /**
     * The cache file for slaves spawned with {@code command}: the java binary, the JVM options, {@code -cp} and the
     * class path (no main class, no program arguments).
     *
     * @throws IllegalArgumentException when {@code command} does not end with {@code -cp <class path>}
     */
    Path fileFor(List<String> command) {
        return dir.resolve("slave-" + key(command) + ".aot");
    }

    /**
     * The key of {@code command} ({@link #fileFor}): a hash of {@code java.vm.version}, the size and modification
     * time of the JDK's {@code lib/modules} (a JDK updated in place), every element of the command but {@code -D}
     * options, and each class path entry's size and modification time (0 / 0 for one that cannot be read). 24 hex
     * digits of SHA-256.
     */
    static String key(List<String> command) {
        String classPath = classPathOf(command);
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("no SHA-256", e);
        }
        update(sha, System.getProperty("java.vm.version", ""));
        update(sha, fileStamp(Path.of(System.getProperty("java.home", "/"), "lib", "modules")));
        for (String part : command) {
            if (mattersToCache(part)) {
                update(sha, part);
            }
        }
        for (String entry : classPath.split(java.io.File.pathSeparator)) {
            update(sha, entry + "\0" + fileStamp(Path.of(entry)));
        }
        return HexFormat.of().formatHex(sha.digest(), 0, 12);
    }

    /**
     * Whether an element of a slave's command line goes into the key and the training run: all but {@code -D} system
     * properties, which do not change what is cached (and may be fault-injection points the training must not hit).
     */
    static boolean mattersToCache(String part) {
        return !part.startsWith("-D");
    }

    /** {@code <size> <modification time in ms>} of {@code file}, {@code "0 0"} when it cannot be read. */
    private static String fileStamp(Path file) {
        try {
            return Files.size(file) + " " + Files.getLastModifiedTime(file).toMillis();
        } catch (IOException | RuntimeException e) {
            // not there: the key still differs from that of one that is
            return "0 0";
        }
    }

    private static void update(MessageDigest sha, String s) {
        sha.update(s.getBytes(StandardCharsets.UTF_8));
        sha.update((byte) 0);
    }

    private static String classPathOf(List<String> command) {
        int n = command.size();
        if (n < 3 || !command.get(n - 2).equals("-cp")) {
            throw new IllegalArgumentException("a slave command ends with -cp <class path>: " + command);
        }
        return command.get(n - 1);
    }

    /**
     * The JVM options that give a slave spawned with {@code command} the cache: {@code -XX:AOTCache=<file>} when the
     * file exists (its modification time is set to now: most recently used), else none.
     */
    List<String> options(List<String> command) {
        if (dir == null) {
            return List.of();
        }
        Path file = fileFor(command);
        if (!Files.isRegularFile(file)) {
            return List.of();
        }
        try {
            Files.setLastModifiedTime(file, FileTime.fromMillis(System.currentTimeMillis()));
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "AOT cache " + file + ": " + e);
        }
        return List.of("-XX:AOTCache=" + file);
    }

    /**
     * Makes the cache for {@code command} on a thread of its own unless it exists, or a training run for it is under
     * way, or there is no cache directory. The training JVM is {@code command}'s without its {@code -D} options, plus
     * {@code -XX:AOTCacheOutput}, running {@link #TRAINING_MAIN}, at nice {@link #TRAINING_NICE}. The cache is written
     * to a temporary name and moved into place once the JVM exited with status 0; a failure is logged with the path of
     * the run's output.
     */
    void trainInBackground(List<String> command) {
        if (dir == null) {
            return;
        }
        Path file = fileFor(command);
        String key = file.getFileName().toString();
        if (!training.add(key)) {
            return;
        }
        // looked at after the claim: a run that just ended has moved its file into place
        if (Files.isRegularFile(file)) {
            training.remove(key);
            return;
        }
        Thread.ofPlatform().name("aot-training").daemon(true).start(() -> {
            try {
                train(command, file);
            } finally {
                training.remove(key);
            }
        });
    }

    /** The training command for slave command {@code command}, writing the cache to {@code output}. */
    static List<String> trainingCommand(List<String> command, Path output) {
        List<String> cmd = new ArrayList<>();
        for (String part : command.subList(0, command.size() - 2)) {
            if (mattersToCache(part)) {
                cmd.add(part);
            }
        }
        cmd.add("-XX:AOTCacheOutput=" + output);
        cmd.addAll(command.subList(command.size() - 2, command.size()));
        cmd.add(TRAINING_MAIN);
        return cmd;
    }

    private void train(List<String> command, Path file) {
        String name = file.getFileName().toString();
        String base = name.substring(0, name.length() - ".aot".length());
        // a name of its own: a training JVM of a master that was killed may still be writing its file
        Path tmp = dir.resolve(base + ".aot." + ProcessHandle.current().pid() + "-" + runs.incrementAndGet() + ".tmp");
        Path log = dir.resolve(base + ".log");
        long startNs = System.nanoTime();
        try {
            // stdin stays a pipe from this process: the training JVM ends when it reads end-of-file (the master died)
            ProcessBuilder builder = new ProcessBuilder(trainingCommand(command, tmp))
                    .redirectErrorStream(true)
                    .redirectOutput(log.toFile());
            builder.environment().keySet().removeAll(io.vhostd.shm.linux.SdNotify.ENVIRONMENT);
            // a child inherits the nice of the thread that spawns it
            io.vhostd.shm.linux.Priority.niceCurrentThread(TRAINING_NICE);
            Process p;
            synchronized (running) {
                if (closed) {
                    return;
                }
                p = builder.start();
                running.add(p);
            }
            boolean ended;
            try {
                ended = p.waitFor(TRAINING_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                if (!ended) {
                    destroyTree(p);
                    p.waitFor(5, TimeUnit.SECONDS);
                }
            } finally {
                synchronized (running) {
                    running.remove(p);
                }
            }
            long ms = (System.nanoTime() - startNs) / 1_000_000;
            if (ended && p.exitValue() == 0 && Files.isRegularFile(tmp)) {
                Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                LOG.log(
                        System.Logger.Level.INFO,
                        "slave AOT cache " + file + " made in " + ms + " ms (" + Files.size(file)
                                + " bytes): slaves spawned from now on start with it");
                try {
                    prune();
                } catch (IOException | RuntimeException e) {
                    LOG.log(System.Logger.Level.WARNING, "slave AOT cache " + dir + ": cannot prune: " + e);
                }
            } else if (!isClosed()) {
                LOG.log(
                        System.Logger.Level.WARNING,
                        "slave AOT cache " + file + " not made: the training JVM "
                                + (ended
                                        ? "exited with status " + p.exitValue()
                                        : "ran over " + TRAINING_TIMEOUT_MS + " ms")
                                + " (output: " + log + "); slaves start without");
            }
        } catch (IOException | RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "slave AOT cache " + file + " not made: " + e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            try {
                Files.deleteIfExists(tmp);
                Files.deleteIfExists(Path.of(tmp + ".config"));
            } catch (IOException e) {
                LOG.log(System.Logger.Level.DEBUG, "AOT cache leftovers: " + e);
            }
        }
    }

    /**
     * Deletes all but the {@link #KEEP} most recently used cache files (and their training output), and temporary
     * files older than an hour (left by a training JVM whose master was killed).
     */
    void prune() throws IOException {
        long staleMs = System.currentTimeMillis() - 3_600_000L;
        try (DirectoryStream<Path> temporary = Files.newDirectoryStream(dir, "slave-*.tmp*")) {
            for (Path t : temporary) {
                if (Files.getLastModifiedTime(t).toMillis() < staleMs) {
                    Files.deleteIfExists(t);
                }
            }
        }
        List<Path> files = new ArrayList<>();
        try (DirectoryStream<Path> all = Files.newDirectoryStream(dir, "slave-*.aot")) {
            all.forEach(files::add);
        }
        files.sort((a, b) -> {
            try {
                return Files.getLastModifiedTime(b).compareTo(Files.getLastModifiedTime(a));
            } catch (IOException e) {
                return 0;
            }
        });
        for (Path old : files.subList(Math.min(KEEP, files.size()), files.size())) {
            String name = old.getFileName().toString();
            Files.deleteIfExists(old);
            Files.deleteIfExists(dir.resolve(name.substring(0, name.length() - ".aot".length()) + ".log"));
            LOG.log(
                    System.Logger.Level.INFO,
                    "slave AOT cache " + old + " deleted (not among the " + KEEP + " last used)");
        }
    }

    private boolean isClosed() {
        synchronized (running) {
            return closed;
        }
    }

    /**
     * Kills {@code p} and its descendants: at its exit a JDK 25 training JVM starts a second JVM that assembles the
     * cache.
     */
    private static void destroyTree(Process p) {
        p.descendants().forEach(ProcessHandle::destroyForcibly);
        p.destroyForcibly();
    }

    /** Stops training runs under way, with the JVMs they started (the master is shutting down). */
    @Override
    public void close() {
        List<Process> stop;
        synchronized (running) {
            closed = true;
            stop = List.copyOf(running);
        }
        stop.forEach(SlaveAotCache::destroyTree);
    }
}
