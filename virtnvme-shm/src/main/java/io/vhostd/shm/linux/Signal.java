package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/** {@code <signal.h>}: signal numbers (x86_64) and {@code kill(2)}. */
public final class Signal {
    public static final int SIGHUP = 1;
    public static final int SIGINT = 2;
    public static final int SIGQUIT = 3;
    public static final int SIGKILL = 9;
    public static final int SIGUSR1 = 10;
    public static final int SIGSEGV = 11;
    public static final int SIGUSR2 = 12;
    public static final int SIGPIPE = 13;
    public static final int SIGTERM = 15;
    public static final int SIGCHLD = 17;
    public static final int SIGCONT = 18;
    public static final int SIGSTOP = 19;

    private static final MethodHandle KILL =
            NativeSupport.downcall("kill", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));

    private Signal() {}

    /**
     * {@code kill(2)}; signal 0 only checks that the process exists.
     *
     * @return 0
     * @throws ErrnoException e.g. {@code ESRCH} when there is no such process
     */
    public static int kill(int pid, int sig) {
        MemorySegment capture = NativeSupport.captureState();
        int rc;
        try {
            rc = (int) KILL.invokeExact(capture, pid, sig);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (rc < 0) {
            throw new ErrnoException("kill", NativeSupport.errno(capture));
        }
        return rc;
    }
}
