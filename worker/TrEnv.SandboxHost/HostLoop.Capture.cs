using System.Diagnostics;
using TrEnv.Contracts;
using TrEnv.Engine;
using TrEnv.Engine.Templates;
using TrEnv.MemoryPool;
using TrEnv.Sandbox;
using static TrEnv.Sandbox.SandboxMessages;

namespace TrEnv.SandboxHost;

// Writing the loaded instance into the pool: a whole template after init, or a session's delta on pause.
internal sealed partial class HostLoop
{
    // The last delta scan (and /tmp archive), reused by the write that follows its size probe when nothing ran in between.
    private (FunctionInstance Instance, long Invocations, string? Base, IReadOnlyList<FunctionInstance.DeltaRun> Runs, long Dirty, byte[]? Files, long FilesSize)? _deltaScan;

    private Captured DoCapture(Capture capture)
    {
        if (_instance is null)
            throw new EngineException(ErrorKinds.NotLoaded, "No function is loaded in this sandbox.");
        var started = Stopwatch.GetTimestamp();
        if (capture.Delta || capture.BaseTemplatePath is not null)
            return DoCaptureDelta(capture, started);
        var required = _instance.CaptureSize();
        if (capture.RegionLength < required)
            return new Captured(required, false, required / TemplateHeader.PageSize, _instance.MemoryBytes, 0);
        using var pool = File.OpenHandle(capture.PoolPath, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var header = _instance.Capture(pool, new Region(capture.RegionOffset, capture.RegionLength), capture.CapturedBy);
        header.Write(capture.HeaderPath);
        var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        return new Captured(required, true, header.NonZeroPages, header.MemoryBytes, micros);
    }

    private Captured DoCaptureDelta(Capture capture, long started)
    {
        var instance = _instance!;
        var baseHeader = capture.BaseTemplatePath is null ? null : TemplateFor(capture.BaseTemplatePath);
        var basePool = baseHeader is null ? null : PoolFor(capture.PoolPath);
        IReadOnlyList<FunctionInstance.DeltaRun> runs;
        long dirty;
        byte[]? files = null;
        long filesSize = 0;
        if (_deltaScan is { } scan && scan.Instance == instance && scan.Invocations == instance.Invocations && scan.Base == capture.BaseTemplatePath)
        {
            (runs, dirty, files, filesSize) = (scan.Runs, scan.Dirty, scan.Files, scan.FilesSize);
        }
        else
        {
            runs = instance.ScanDelta(baseHeader, basePool, out dirty);
            if (capture.MaxFilesBytes >= 0)
            {
                files = _files.CaptureChanges(_loaded?.Instance.LayerPath, capture.MaxFilesBytes, out filesSize);
                if (files is not null && FileDelta.IsEmpty(files))
                    (files, filesSize) = (null, 0); // /tmp as its layer left it: nothing to store
            }
        }
        _deltaScan = (instance, instance.Invocations, capture.BaseTemplatePath, runs, dirty, files, filesSize);
        var pagesBytes = runs.Where(r => !r.Zero).Sum(r => r.Length);
        var required = pagesBytes + filesSize;
        var dataPages = pagesBytes / TemplateHeader.PageSize;
        // Nothing changed (0 bytes) is written at once, with no region; /tmp changes past their bound are never written.
        if (capture.RegionLength < required || (files is null && filesSize > 0))
            return new Captured(required, false, dataPages, instance.MemoryBytes, 0, dirty, filesSize);
        using var pool = File.OpenHandle(capture.PoolPath, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var header = instance.CaptureDelta(runs, baseHeader, pool, new Region(capture.RegionOffset, capture.RegionLength), capture.CapturedBy);
        string? filesSha = null;
        if (files is not null)
        {
            // The archive follows the pages in the same region, so the durable copy and an upload carry both.
            RandomAccess.Write(pool, files, capture.RegionOffset + pagesBytes);
            filesSha = FileDelta.Sha256(files);
        }
        header.Write(capture.HeaderPath);
        _deltaScan = null;
        var micros = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        SandboxLog.Write(Console.Error, "pause", null, _loaded?.Instance.Function, ("micros", micros), ("storedBytes", required), ("zeroPages", runs.Where(r => r.Zero).Sum(r => r.Length) / TemplateHeader.PageSize),
            ("memoryBytes", instance.MemoryBytes), ("dirtyPages", dirty), ("filesBytes", filesSize));
        return new Captured(required, true, dataPages, instance.MemoryBytes, micros, dirty, filesSize, filesSha);
    }
}
