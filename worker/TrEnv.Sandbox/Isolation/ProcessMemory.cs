using System.Globalization;

namespace TrEnv.Sandbox.Isolation;

/// <summary>Reads a process's memory from /proc.</summary>
public static class ProcessMemory
{
    /// <summary>Proportional set size in bytes (shared pages split between their users), or 0 if the process is gone.</summary>
    public static long PssBytes(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/smaps_rollup"))
            {
                if (line.StartsWith("Pss:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return 0;
    }
}
