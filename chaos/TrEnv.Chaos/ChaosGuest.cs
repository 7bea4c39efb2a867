using System.Text;

namespace TrEnv.Chaos;

/// <summary>The answers of guests/src/chaos.c, computed here so that every answer the cluster gives can be checked.</summary>
public static class ChaosGuest
{
    private const uint Words = 1u << 20;

    public static string Expected(ulong salt, string input)
    {
        var bytes = Encoding.UTF8.GetBytes(input);
        var h = salt;
        foreach (var b in bytes)
        {
            var index = (uint)(h ^ b) & (Words - 1);
            h = Mix(h ^ b ^ Table(salt, index));
        }
        return $"{salt}:{h:x16}:{input}";
    }

    // The guest's table[i], built at init; a pure function of the salt, so nothing is stored here.
    private static uint Table(ulong salt, uint i) => (uint)Mix(i ^ salt);

    private static ulong Mix(ulong x)
    {
        unchecked
        {
            x ^= x >> 33;
            x *= 0xff51afd7ed558ccdUL;
            x ^= x >> 33;
            x *= 0xc4ceb9fe1a85ec53UL;
            x ^= x >> 33;
            return x;
        }
    }
}
