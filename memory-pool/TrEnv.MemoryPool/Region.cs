namespace TrEnv.MemoryPool;

/// <summary>A page-aligned byte range of the pool device.</summary>
public readonly record struct Region(long Offset, long Length)
{
    public long End => Offset + Length;

    public bool Overlaps(Region other) => Offset < other.End && other.Offset < End;

    public override string ToString() => $"[{Offset:#,0}+{Length:#,0})";
}
