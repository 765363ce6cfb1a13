package io.vhostd.dist;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The daemon configuration the integration tests use: one file bdev ({@code disk0}) served by one
 * vhost-user-blk controller ({@code vhost.0}).
 *
 * <p>Sockets and the config live in {@code socketDir} (a short path: a unix socket path has at most 107
 * bytes); the image lives in {@code imageFile} on disk.
 *
 * @param socketDir directory of the config file, {@code run_dir}, {@code rpc_socket} and the controller socket
 * @param imageFile the file bdev
 * @param sizeBytes size of the file bdev
 * @param numQueues {@code num_queues} of the controller
 */
record MasterConfig(Path socketDir, Path imageFile, long sizeBytes, int numQueues) {

    /**
     * A config in a new temporary socket directory, with a fresh image {@code <test>-<pid>.img} in the test's work
     * directory, written; {@link #deleteFiles} removes both.
     */
    static MasterConfig temporary(ItEnv env, String test, long sizeBytes, int numQueues) throws IOException {
        Path socketDir = Files.createTempDirectory("vhostd-it-");
        Path image = env.workDir().resolve(test + "-" + ProcessHandle.current().pid() + ".img");
        Files.deleteIfExists(image);
        MasterConfig config = new MasterConfig(socketDir, image, sizeBytes, numQueues);
        config.write();
        return config;
    }

    /** Deletes the image and the socket directory with everything in it. */
    void deleteFiles() throws IOException {
        Files.deleteIfExists(imageFile);
        try (java.util.stream.Stream<Path> paths = Files.walk(socketDir)) {
            for (Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    Path configFile() {
        return socketDir.resolve("vhostd.yaml");
    }

    Path runDir() {
        return socketDir.resolve("run");
    }

    Path rpcSocket() {
        return socketDir.resolve("rpc.sock");
    }

    Path vhostSocket() {
        return socketDir.resolve("vhost.0.sock");
    }

    String yaml() {
        return """
                run_dir: %s
                rpc_socket: %s
                bdevs:
                  - {name: disk0, type: file, path: %s, size_bytes: %d}
                controllers:
                  - {name: vhost.0, type: vhost-user-blk, bdev: disk0, socket: %s, num_queues: %d}
                """.formatted(runDir(), rpcSocket(), imageFile, sizeBytes, vhostSocket(), numQueues);
    }

    /** Writes the config file and creates the image (sparse) if it does not exist yet. */
    Path write() throws IOException {
        Files.createDirectories(socketDir);
        Files.createDirectories(imageFile.getParent());
        if (!Files.exists(imageFile)) {
            try (RandomAccessFile image = new RandomAccessFile(imageFile.toFile(), "rw")) {
                image.setLength(sizeBytes);
            }
        }
        return Files.writeString(configFile(), yaml());
    }
}
