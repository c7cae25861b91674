/// Random two-word display names for runs, such as `"gentle-harbor"`.
///
/// The name is `adjective-noun`, drawn from ``adjectives`` and ``nouns`` (100 each, so
/// 10,000 names). Names are lowercase ASCII letters joined by one hyphen, which makes every
/// generated name a valid run id too. Pass your own generator to get a fixed sequence in tests.
package enum RunNameGenerator {
    /// The adjectives names start with: 100 distinct lowercase words.
    package static let adjectives: [String] = [
        "amber", "ancient", "autumn", "azure", "billowing", "blue", "bold", "brave", "breezy",
        "bright", "brisk", "broad", "calm", "celestial", "cheerful", "clever", "cool", "cosmic",
        "crimson", "crisp", "curious", "dappled", "dazzling", "deep", "distant", "divine", "dusky",
        "eager", "earnest", "electric", "elegant", "emerald", "fearless", "fiery", "floral",
        "fluent", "fragrant", "frosty", "gallant", "gentle", "gilded", "glad", "glowing", "golden",
        "graceful", "grand", "green", "hardy", "hazy", "hidden", "honest", "icy", "jolly", "keen",
        "kind", "lilac", "lively", "lucky", "lunar", "misty", "mystic", "nimble", "noble", "olive",
        "patient", "polar", "proud", "quiet", "radiant", "rapid", "rising", "robust", "rosy",
        "rustic", "sandy", "scarlet", "serene", "silent", "silver", "sleek", "smooth", "snowy",
        "solar", "sparkling", "spring", "stellar", "stormy", "summer", "sunny", "swift", "tender",
        "twilight", "vivid", "wandering", "warm", "wild", "winter", "wise", "young", "zesty",
    ]

    /// The nouns names end with: 100 distinct lowercase words.
    package static let nouns: [String] = [
        "aurora", "bay", "bird", "blossom", "breeze", "brook", "butterfly", "canyon", "cascade",
        "cedar", "cherry", "cliff", "cloud", "comet", "coral", "cosmos", "creek", "dawn", "delta",
        "dew", "dream", "dune", "eagle", "echo", "ember", "falcon", "feather", "fern", "field",
        "firefly", "flower", "fog", "forest", "frost", "galaxy", "garden", "glacier", "glade",
        "grove", "harbor", "haze", "heron", "hill", "horizon", "island", "lake", "lantern", "leaf",
        "lighthouse", "lily", "maple", "meadow", "meteor", "mist", "moon", "moss", "mountain",
        "nebula", "night", "oak", "ocean", "orbit", "otter", "owl", "pebble", "pine", "planet",
        "pond", "prairie", "rain", "rainbow", "reef", "ridge", "river", "sea", "shadow", "shore",
        "sky", "smoke", "snowflake", "sound", "spark", "sparrow", "star", "stone", "stream", "sun",
        "sunset", "surf", "thunder", "tide", "tree", "valley", "violet", "voice", "water", "wave",
        "willow", "wind", "wood",
    ]

    /// A random `adjective-noun` name from the system's random number generator.
    package static func random() -> String {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    /// A random `adjective-noun` name drawn from `generator`.
    package static func random<G: RandomNumberGenerator>(using generator: inout G) -> String {
        let adjective = adjectives.randomElement(using: &generator)!
        let noun = nouns.randomElement(using: &generator)!
        return adjective + "-" + noun
    }
}
