//! The book's own training corpus: small stories, facts and tasks, generated.
//!
//! The book never downloads anything, so the text its models learn from is
//! made here, by a seeded grammar written for the book. [`corpus`] returns
//! about 1.2 MB of plain ASCII in three kinds of document, each followed by a
//! blank line and interleaved in a seeded random order:
//!
//! - **stories** (about half the bytes): short children's stories with a cast
//!   (names with consistent pronouns, a friend, a pet), a place, a problem, an
//!   attempt and a resolution;
//! - **facts** (about a quarter): true statements about the towns of a small
//!   invented [`world`], each fact stated in several phrasings and repeated
//!   many times, so that a model can memorise them;
//! - **tasks** (about a quarter): questions and answers in a fixed
//!   `Q: ...` / `A: ...` format: sums and differences of numbers below 100,
//!   questions about the towns, reversing, spelling and measuring words,
//!   counting letters, weekdays, ordering numbers. Every answer is correct.
//!
//! The text is small and regular enough for a toy GPT to learn visibly in a
//! minute, and built for the later chapters: towns, animals, colours, names and
//! numbers appear in similar contexts (embeddings), the town table can be
//! checked against what a model says (memorised or made up), a few
//! [`World::held_out`] towns never appear at all (hallucination), and the
//! arithmetic only ever uses operands below 100 (length generalisation).
//!
//! Everything is deterministic: a seed gives the same bytes on every run and
//! every machine (ChaCha8, see [`crate::rng`]).

use crate::rng::{ChaCha8Rng, RngExt, seeded};
use rand::seq::{IndexedRandom, SliceRandom};

/// The seed of the book's default corpus.
pub const CORPUS_SEED: u64 = 1;

/// The size of the book's default corpus, in bytes (a lower bound).
pub const DEFAULT_BYTES: usize = 1_200_000;

/// The seed of the invented world; it is fixed, whatever the corpus seed.
pub const WORLD_SEED: u64 = 7;

/// The share of each kind of document in the corpus, in bytes.
pub const SHARES: [(Kind, f64); 3] = [(Kind::Story, 0.5), (Kind::Fact, 0.25), (Kind::Task, 0.25)];

/// The kind of a document in the corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A short children's story.
    Story,
    /// Statements about one town of the [`world`].
    Fact,
    /// Questions with their answers, in `Q: ...` / `A: ...` lines.
    Task,
}

/// One document of the corpus, with its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// What kind of text this is.
    pub kind: Kind,
    /// The text, without the blank line that follows it in the corpus.
    pub text: String,
}

/// The book's default corpus: `generate(CORPUS_SEED, DEFAULT_BYTES)`.
///
/// It takes a few tens of milliseconds; call it once and keep the string.
///
/// ```
/// let text = listings::corpus::corpus();
/// assert!(text.len() >= 1_000_000);
/// assert!(text.is_ascii());
/// ```
pub fn corpus() -> String {
    generate(CORPUS_SEED, DEFAULT_BYTES)
}

/// A corpus of at least `min_bytes` bytes: documents each followed by a blank line.
///
/// ```
/// use listings::corpus::generate;
/// assert_eq!(generate(3, 5_000), generate(3, 5_000));
/// assert_ne!(generate(3, 5_000), generate(4, 5_000));
/// assert!(generate(3, 5_000).len() >= 5_000);
/// ```
pub fn generate(seed: u64, min_bytes: usize) -> String {
    let documents = documents(seed, min_bytes);
    let mut text = String::with_capacity(min_bytes + 4096);
    for document in &documents {
        text.push_str(&document.text);
        text.push_str("\n\n");
    }
    text
}

/// The documents of [`generate`]`(seed, min_bytes)`, in corpus order.
///
/// Each kind gets its [`SHARES`] of the bytes; then all documents are shuffled.
///
/// ```
/// use listings::corpus::{documents, Kind};
/// let docs = documents(1, 20_000);
/// let stories = docs.iter().filter(|d| d.kind == Kind::Story).count();
/// assert!(stories > 0 && stories < docs.len());
/// ```
pub fn documents(seed: u64, min_bytes: usize) -> Vec<Document> {
    let towns = world().towns;
    let mut rng = seeded(seed);
    let mut documents = Vec::new();
    for (kind, share) in SHARES {
        let budget = (min_bytes as f64 * share).ceil() as usize;
        let mut bytes = 0;
        while bytes < budget {
            let text = match kind {
                Kind::Story => story(&mut rng, &towns),
                Kind::Fact => town_facts(&mut rng, &towns),
                Kind::Task => task_document(&mut rng, &towns),
            };
            bytes += text.len() + 2; // with the blank line that follows it
            documents.push(Document { kind, text });
        }
    }
    documents.shuffle(&mut rng);
    documents
}

/// Splits `text` into its first `train_fraction` and the rest, at a char boundary.
///
/// This is nanoGPT's split: the first 90% to train on, the last 10% to validate.
///
/// ```
/// use listings::corpus::train_val_split;
/// assert_eq!(train_val_split("abcdefghij", 0.9), ("abcdefghi", "j"));
/// ```
pub fn train_val_split(text: &str, train_fraction: f64) -> (&str, &str) {
    assert!(
        (0.0..=1.0).contains(&train_fraction),
        "train_fraction must be in 0..=1, got {train_fraction}"
    );
    let mut cut = (text.len() as f64 * train_fraction) as usize;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.split_at(cut)
}

/// The question/answer pairs in `text`: each `Q: ` line directly followed by an `A: ` line.
///
/// ```
/// use listings::corpus::qa_pairs;
/// let text = "Q: What is 2 + 3?\nA: 5\n\nQ: Reverse the word cat.\nA: tac\n";
/// assert_eq!(qa_pairs(text), [("What is 2 + 3?", "5"), ("Reverse the word cat.", "tac")]);
/// ```
pub fn qa_pairs(text: &str) -> Vec<(&str, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter_map(|pair| Some((pair[0].strip_prefix("Q: ")?, pair[1].strip_prefix("A: ")?)))
        .collect()
}

// ---------------------------------------------------------------------------
// The world: invented towns with fixed facts.

/// One invented town and the facts the corpus states about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Town {
    /// The town's name, e.g. `Pellmere`.
    pub name: String,
    /// The region it lies in, without "the", e.g. `Amber Hills`.
    pub region: String,
    /// The river it stands on, without "the river", e.g. `Tamber`.
    pub river: String,
    /// The food it is famous for, e.g. `plum cake`.
    pub food: String,
    /// Its main trade, e.g. `rope making`.
    pub trade: String,
    /// Its mayor's full name.
    pub mayor: String,
    /// The name of the nearest town (always a town that appears in the corpus).
    pub neighbour: String,
    /// The year it was founded.
    pub founded: u32,
}

/// One kind of fact about a town: a column of the world table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attribute {
    /// [`Town::region`]
    Region,
    /// [`Town::river`]
    River,
    /// [`Town::food`]
    Food,
    /// [`Town::trade`]
    Trade,
    /// [`Town::mayor`]
    Mayor,
    /// [`Town::founded`]
    Founded,
    /// [`Town::neighbour`]
    Neighbour,
}

impl Attribute {
    /// Every attribute, in table order.
    pub const ALL: [Attribute; 7] = [
        Attribute::Region,
        Attribute::River,
        Attribute::Food,
        Attribute::Trade,
        Attribute::Mayor,
        Attribute::Founded,
        Attribute::Neighbour,
    ];
}

impl Town {
    /// The value of one attribute, written exactly as the corpus answers it.
    ///
    /// ```
    /// use listings::corpus::{world, Attribute};
    /// let town = &world().towns[0];
    /// assert_eq!(town.value(Attribute::Founded), town.founded.to_string());
    /// ```
    pub fn value(&self, attribute: Attribute) -> String {
        match attribute {
            Attribute::Region => self.region.clone(),
            Attribute::River => self.river.clone(),
            Attribute::Food => self.food.clone(),
            Attribute::Trade => self.trade.clone(),
            Attribute::Mayor => self.mayor.clone(),
            Attribute::Founded => self.founded.to_string(),
            Attribute::Neighbour => self.neighbour.clone(),
        }
    }
}

/// The invented world: the towns of the corpus and a few held out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct World {
    /// Towns the corpus talks about, each many times.
    pub towns: Vec<Town>,
    /// Towns with a full table row that never appear in the corpus.
    pub held_out: Vec<Town>,
}

impl World {
    /// The town called `name`, held out or not.
    ///
    /// ```
    /// let world = listings::corpus::world();
    /// let name = &world.held_out[0].name;
    /// assert_eq!(world.town(name), Some(&world.held_out[0]));
    /// assert_eq!(world.town("Atlantis"), None);
    /// ```
    pub fn town(&self, name: &str) -> Option<&Town> {
        self.towns
            .iter()
            .chain(&self.held_out)
            .find(|town| town.name == name)
    }
}

/// How many towns the corpus talks about.
pub const TOWN_COUNT: usize = 48;

/// How many towns are held out of the corpus.
pub const HELD_OUT_COUNT: usize = 4;

/// The invented world, the same on every call (built from [`WORLD_SEED`]).
///
/// ```
/// let world = listings::corpus::world();
/// assert_eq!(world.towns.len(), listings::corpus::TOWN_COUNT);
/// assert!(world.towns.iter().all(|t| t.neighbour != t.name));
/// ```
pub fn world() -> World {
    let mut rng = seeded(WORLD_SEED);
    let mut roots = TOWN_ROOTS.to_vec();
    roots.shuffle(&mut rng);
    let mut mayors = Vec::new();
    while mayors.len() < TOWN_COUNT + HELD_OUT_COUNT {
        let mayor = format!(
            "{} {}",
            pick(&mut rng, MAYOR_FIRST),
            pick(&mut rng, MAYOR_LAST)
        );
        if !mayors.contains(&mayor) {
            mayors.push(mayor);
        }
    }
    let mut towns: Vec<Town> = (0..TOWN_COUNT + HELD_OUT_COUNT)
        .map(|i| {
            let (region, rivers) = REGIONS[i % REGIONS.len()];
            Town {
                name: format!("{}{}", roots[i], pick(&mut rng, TOWN_SUFFIXES)),
                region: region.to_string(),
                river: pick(&mut rng, rivers).to_string(),
                food: pick(&mut rng, FOODS).to_string(),
                trade: pick(&mut rng, TRADES).to_string(),
                mayor: mayors[i].clone(),
                neighbour: String::new(),
                founded: rng.random_range(1100..1900),
            }
        })
        .collect();
    let mut held_out = towns.split_off(TOWN_COUNT);
    // The nearest town is another town of the same region that the corpus mentions.
    for i in 0..towns.len() + held_out.len() {
        let region = if i < towns.len() {
            &towns[i].region
        } else {
            &held_out[i - towns.len()].region
        };
        let candidates: Vec<&str> = towns
            .iter()
            .enumerate()
            .filter(|&(j, town)| j != i && town.region == *region)
            .map(|(_, town)| town.name.as_str())
            .collect();
        let neighbour = pick(&mut rng, &candidates[..]).to_string();
        match towns.get_mut(i) {
            Some(town) => town.neighbour = neighbour,
            None => held_out[i - TOWN_COUNT].neighbour = neighbour,
        }
    }
    World { towns, held_out }
}

/// Name roots: each town gets a different one, so no name contains another.
const TOWN_ROOTS: &[&str] = &[
    "Brin", "Cald", "Dunn", "Esk", "Farra", "Gorm", "Hollin", "Isen", "Jarro", "Kell", "Lorn",
    "Marrow", "Norra", "Ombre", "Pell", "Quill", "Rushin", "Sallow", "Tarn", "Ulla", "Vey", "Wex",
    "Yarn", "Zell", "Abber", "Bexen", "Corrin", "Dray", "Eppel", "Fenn", "Glim", "Harrow", "Ivel",
    "Jessen", "Kirren", "Lumm", "Mossen", "Nettle", "Orrel", "Pim", "Quarren", "Ridd", "Stoat",
    "Thrum", "Umber", "Wrenn", "Yelt", "Zander", "Ashen", "Brackle", "Cobble", "Drossel", "Elver",
    "Fallow",
];

/// Name endings, as in many English place names.
const TOWN_SUFFIXES: &[&str] = &[
    "ford", "by", "wick", "mere", "ton", "stead", "holm", "bury", "dale", "combe", "haven", "well",
    "bridge", "field",
];

/// Regions, each with the rivers that run through it.
const REGIONS: &[(&str, &[&str])] = &[
    ("Amber Hills", &["Tamber", "Orrin", "Lisk"]),
    ("Low Fens", &["Mardle", "Quell"]),
    ("Salt Coast", &["Fennow", "Brisk", "Ossle"]),
    ("Westmarch", &["Wendle", "Rundle"]),
    ("Tall Woods", &["Pellin", "Dorrow", "Vell"]),
    ("Green Vale", &["Silvan", "Marrin"]),
    ("Stone Moors", &["Tarrow", "Kettle"]),
    ("Eastreach", &["Yore", "Hollis", "Skerry"]),
];

const FOODS: &[&str] = &[
    "plum cake",
    "smoked eel",
    "honey bread",
    "pea soup",
    "cheese pies",
    "apple tarts",
    "onion bread",
    "fish stew",
    "ginger biscuits",
    "barley soup",
    "walnut loaf",
    "pear jam",
    "mushroom pies",
    "oat cakes",
    "cherry buns",
    "leek soup",
    "seed cake",
    "spiced sausages",
    "blackberry pie",
    "salted herring",
    "potato cakes",
    "lemon buns",
    "bean stew",
    "nut toffee",
];

const TRADES: &[&str] = &[
    "weaving",
    "rope making",
    "boat building",
    "clock making",
    "fishing",
    "salt panning",
    "glass blowing",
    "bell casting",
    "cheese making",
    "candle making",
    "paper making",
    "brewing",
    "tin mining",
    "wood carving",
    "sheep farming",
    "cloth dyeing",
];

const MAYOR_FIRST: &[&str] = &[
    "Hetty", "Walter", "Agnes", "Cyril", "Edna", "Percy", "Mabel", "Rupert", "Dora", "Alfred",
    "Winifred", "Cecil", "Olive", "Bernard", "Maud", "Horace", "Ida", "Stanley", "Beryl", "Lionel",
];

const MAYOR_LAST: &[&str] = &[
    "Vance", "Ashby", "Crane", "Dimble", "Ferris", "Gage", "Holt", "Keel", "Larch", "Moss", "Nutt",
    "Orme", "Pratt", "Quayle", "Rook", "Stebbing", "Thorne", "Upton", "Whitlow", "Yapp",
];

// ---------------------------------------------------------------------------
// Templates: `{key}` is replaced by a named value; `{Key}` capitalises it.

/// Named values that templates refer to as `{key}`.
#[derive(Default)]
struct Slots(Vec<(&'static str, String)>);

impl Slots {
    /// Sets `{key}`.
    fn set(&mut self, key: &'static str, value: impl Into<String>) {
        self.0.push((key, value.into()));
    }

    /// The value of `{key}`; `{Key}` gives it with a capital first letter.
    fn get(&self, key: &str) -> String {
        let lower = key[..1].to_ascii_lowercase() + &key[1..];
        let (_, value) = self
            .0
            .iter()
            .find(|(k, _)| *k == lower)
            .unwrap_or_else(|| panic!("no slot {{{key}}}"));
        if key == lower {
            value.clone()
        } else {
            capitalise(value)
        }
    }
}

/// `template` with every `{key}` replaced from `slots`.
fn fill(template: &str, slots: &Slots) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("every { has a }");
        out.push_str(&rest[..open]);
        out.push_str(&slots.get(&rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// `word` with a capital first letter.
fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// `word` after "a" or "an".
fn with_article(word: &str) -> String {
    let article = if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {word}")
}

/// One item of a non-empty list, chosen uniformly.
fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    items.choose(rng).expect("lists are not empty")
}

// ---------------------------------------------------------------------------
// Stories.

/// Children with their pronoun.
const CHILDREN: &[(&str, &str)] = &[
    ("Mira", "she"),
    ("Tom", "he"),
    ("Lena", "she"),
    ("Sam", "he"),
    ("Ivy", "she"),
    ("Ben", "he"),
    ("Nora", "she"),
    ("Leo", "he"),
    ("Ruby", "she"),
    ("Max", "he"),
    ("Ella", "she"),
    ("Finn", "he"),
    ("Rosa", "she"),
    ("Oscar", "he"),
    ("Lily", "she"),
    ("Jack", "he"),
    ("Maya", "she"),
    ("Eli", "he"),
    ("Zoe", "she"),
    ("Omar", "he"),
    ("Anna", "she"),
    ("Theo", "he"),
    ("Clara", "she"),
    ("Noah", "he"),
    ("Ava", "she"),
    ("Hugo", "he"),
    ("Iris", "she"),
    ("Ravi", "he"),
    ("Lucy", "she"),
    ("Ned", "he"),
    ("June", "she"),
    ("Kofi", "he"),
    ("Tess", "she"),
    ("Arlo", "he"),
    ("Hana", "she"),
    ("Jonah", "he"),
    ("Pia", "she"),
    ("Milo", "he"),
    ("Esme", "she"),
    ("Dev", "he"),
];

/// Animals, singular and plural.
const ANIMALS: &[(&str, &str)] = &[
    ("dog", "dogs"),
    ("cat", "cats"),
    ("duck", "ducks"),
    ("goat", "goats"),
    ("hen", "hens"),
    ("rabbit", "rabbits"),
    ("pony", "ponies"),
    ("fox", "foxes"),
    ("owl", "owls"),
    ("frog", "frogs"),
    ("mouse", "mice"),
    ("sheep", "sheep"),
    ("pig", "pigs"),
    ("goose", "geese"),
    ("hedgehog", "hedgehogs"),
    ("squirrel", "squirrels"),
];

const PETS: &[&str] = &[
    "dog", "cat", "rabbit", "duck", "goat", "pony", "hen", "mouse", "hedgehog", "pig",
];
const PET_NAMES: &[&str] = &[
    "Button", "Pepper", "Mossy", "Sprout", "Nutmeg", "Pebble", "Toffee", "Bramble", "Marble",
    "Crumb", "Whisk", "Clover", "Biscuit", "Bean", "Ziggy", "Fudge",
];
const ADULTS: &[&str] = &[
    "Gran",
    "Grandpa",
    "Mum",
    "Dad",
    "Aunt Peg",
    "Uncle Wilf",
    "Nana",
];
const TRAITS: &[&str] = &[
    "little", "kind", "curious", "brave", "cheerful", "clever", "shy", "busy", "quiet", "friendly",
];
const COLOURS: &[&str] = &[
    "red", "blue", "green", "yellow", "orange", "purple", "pink", "white", "black", "brown",
    "grey", "silver",
];
const PLACES: &[&str] = &[
    "park",
    "garden",
    "beach",
    "wood",
    "meadow",
    "farm",
    "market",
    "harbour",
    "orchard",
    "hill",
    "pond",
    "playground",
    "river bank",
    "village green",
    "lake",
];
const SPOTS: &[&str] = &[
    "the old bench",
    "a big rock",
    "the gate",
    "a pile of leaves",
    "the fence",
    "a tall bush",
    "the wooden bridge",
    "the flower bed",
    "a hollow log",
    "the stone wall",
];
const TIMES: &[&str] = &[
    "sunny morning",
    "windy afternoon",
    "bright morning",
    "cool morning",
    "warm afternoon",
    "quiet evening",
    "cloudy day",
    "fine spring day",
    "crisp autumn morning",
    "hot summer day",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const SAD: &[&str] = &["sad", "worried", "upset", "cross", "unhappy"];
const GLAD: &[&str] = &["happy", "glad", "proud", "cheerful", "sleepy and happy"];
const SNACKS: &[&str] = &[
    "warm soup",
    "bread and jam",
    "apple pie",
    "hot milk",
    "pancakes",
    "cheese on toast",
    "honey cakes",
    "fresh bread",
    "berries and cream",
    "rice pudding",
];
const HOBBIES: &[&str] = &[
    "drawing",
    "singing",
    "climbing trees",
    "reading books",
    "jumping in puddles",
    "building things",
    "looking at the stars",
    "running fast",
    "telling jokes",
    "collecting shells",
];
const FEARS: &[&str] = &[
    "a big barking dog",
    "a dark cave",
    "the deep water",
    "a loud clap of thunder",
    "a huge spider",
    "the tall slide",
    "a long dark tunnel",
    "a strange noise in the bushes",
];
const LANDMARKS: &[&str] = &[
    "the big oak tree",
    "the top of the hill",
    "the old mill",
    "the end of the lane",
    "the bridge",
    "the duck pond",
];
const NUMBER_WORDS: [&str; 13] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve",
];

/// One kind of story: what goes wrong, how the cast tries, how it ends well.
struct Plot {
    /// Things the story can be about: `{obj}`.
    objects: &'static [&'static str],
    problem: &'static [&'static str],
    reaction: &'static [&'static str],
    attempt: &'static [&'static str],
    resolution: &'static [&'static str],
    lesson: &'static [&'static str],
}

const ANY_OBJECT: &[&str] = &["ball", "kite", "hat", "book", "drum"];

const PLOTS: &[Plot] = &[
    // Something is lost, and the one who lost it finds it.
    Plot {
        objects: &[
            "kite", "ball", "hat", "scarf", "boot", "book", "cup", "drum", "toy boat", "lantern",
            "mitten", "whistle",
        ],
        problem: &[
            "After a while, {hero} looked down and saw that {his} {colour} {obj} was gone.",
            "But when it was time to go home, {hero} could not find {his} {colour} {obj}.",
            "Then {hero} looked in {his} bag. The {colour} {obj} was not there!",
            "Suddenly {hero} cried out. {His} {colour} {obj} was missing.",
        ],
        reaction: SAD_REACTIONS,
        attempt: &[
            "{He} looked under the benches and behind the trees, but {he} did not find it.",
            r#"{He} asked {friend}, "Have you seen my {obj}?" {friend} shook {fhis} head."#,
            "{hero} and {friend} looked everywhere in the {place}. They looked high and they looked low.",
            "{He} walked back along the path, step by step, looking at the ground.",
        ],
        resolution: &[
            "Then {pet} the {animal} sniffed at {spot}, and {hero} looked behind it. There was the {colour} {obj}!",
            "Just then, {hero} saw something {colour} by {spot}. It was {his} {obj}! {He} picked it up and hugged it.",
            r#"{friend} pointed at {spot}. "Look there!" {fhe} said. {hero} ran over and found {his} {colour} {obj}."#,
            "{hero} thought hard about where {he} had been. {He} went back to {spot}, and there was the {colour} {obj}.",
        ],
        lesson: &[
            "After that, {hero} always kept {his} {obj} close.",
            "{hero} learned to look carefully before feeling {sad}.",
        ],
    },
    // Something is stuck up a tree.
    Plot {
        objects: &["kite", "ball", "hat", "scarf", "paper plane", "balloon"],
        problem: &[
            "A strong gust of wind took {his} {colour} {obj} and carried it up into a tall tree.",
            "{hero} threw the {colour} {obj} high in the air, and it got stuck in the branches of an old oak.",
        ],
        reaction: &[
            r#""Oh no," said {hero}. "How will I get it down?""#,
            "{hero} looked up at the {obj} and felt {sad}.",
        ],
        attempt: &[
            "{He} jumped as high as {he} could, but {he} could not reach it.",
            "{friend} shook the tree, but the {obj} did not move.",
            "They threw a stick at it, but the stick fell back down.",
        ],
        resolution: &[
            "Then {adult} came with a long ladder and brought the {obj} down.",
            "Then the wind blew again, and the {colour} {obj} floated down into {hero}'s arms.",
            "{friend} let {hero} climb onto {fhis} shoulders, and this time {hero} could reach the {obj}.",
        ],
        lesson: &[
            "Next time, {hero} played with the {obj} far away from the trees.",
            "{hero} learned that two friends can reach higher than one.",
        ],
    },
    // Two friends want the same thing.
    Plot {
        objects: &[
            "ball",
            "drum",
            "kite",
            "book",
            "toy boat",
            "whistle",
            "yo-yo",
            "skipping rope",
        ],
        problem: &[
            "{friend} wanted to play with the {colour} {obj} too, but {hero} held it tight.",
            r#"Both {hero} and {friend} wanted the {colour} {obj}. "It is mine!" said {hero}. "I had it first!" said {friend}."#,
        ],
        reaction: &[
            "Nobody wanted to let go.",
            "{hero} felt {sad}, and so did {friend}.",
        ],
        attempt: &[
            "They pulled and pulled, and soon they were both cross.",
            "{friend} walked away and sat alone by {spot}.",
            "{hero} played with the {obj} alone, but it was not much fun.",
        ],
        resolution: &[
            r#"Then {hero} had an idea. "Let us take turns," {he} said, and {he} gave the {obj} to {friend} first."#,
            r#"{adult} said, "Things are more fun when you share them." So they played with the {obj} together."#,
            "{hero} walked over to {friend} and said sorry. Then they played with the {colour} {obj} until it was time for tea.",
        ],
        lesson: &[
            "{hero} learned that sharing makes a game better.",
            "A game for two is better than a game for one.",
        ],
    },
    // Something breaks and is mended.
    Plot {
        objects: &[
            "kite",
            "toy boat",
            "drum",
            "cup",
            "lantern",
            "clock",
            "toy train",
            "music box",
            "umbrella",
        ],
        problem: &[
            "Then the {colour} {obj} fell on a stone and broke into pieces.",
            "{hero} sat on the {colour} {obj} by mistake, and it cracked.",
        ],
        reaction: SAD_REACTIONS,
        attempt: &[
            "{He} tried to fix it with tape, but the tape would not stick.",
            "{He} carried the pieces home to show {adult}.",
            "{friend} tried to help, but one piece was still missing.",
        ],
        resolution: &[
            "{adult} found some glue and string, and together they made the {obj} as good as new.",
            "{friend} was good at fixing things, and soon the {colour} {obj} worked again.",
            "{hero} found the last piece under {spot}. With a little glue, the {obj} was whole again.",
        ],
        lesson: &[
            "{hero} learned that broken things can often be mended.",
            "After that, {hero} was careful with the {obj}.",
        ],
    },
    // Someone is afraid.
    Plot {
        objects: ANY_OBJECT,
        problem: &[
            "Then {hero} saw {fear}, and {he} stopped.",
            "At the end of the path there was {fear}. {hero} did not want to go on.",
        ],
        reaction: &[
            "{hero}'s heart beat fast.",
            "{friend} saw that {hero} was scared and held {his} hand.",
            "{hero} felt very small.",
        ],
        attempt: &[
            "{He} held on to {friend}'s hand very tightly.",
            "{He} took a deep breath and counted to {age}.",
            r#"{friend} said, "I am scared too, but we can be brave together.""#,
        ],
        resolution: &[
            "Step by step, {hero} went closer, and soon {he} saw that there was nothing to be afraid of.",
            r#"{adult} came and said, "It is all right. It cannot hurt you." And {hero} felt brave again."#,
            "{pet} the {animal} ran ahead without a care, and {hero} followed {pet}. It was not so bad after all.",
        ],
        lesson: &[
            "{hero} learned that being brave does not mean never being scared.",
            "After that, {hero} was not afraid of {fear} any more.",
        ],
    },
    // A present for a friend.
    Plot {
        objects: ANY_OBJECT,
        problem: &[
            "On the way, {hero} remembered that it was {friend}'s birthday the next day, and {he} had no present.",
            "{friend}'s birthday was the next day, and {hero} wanted to give {fhim} something special.",
        ],
        reaction: &[
            "{hero} did not know what to do.",
            r#""What can I give {fhim}?" {hero} wondered."#,
        ],
        attempt: &[
            "First {he} tried to bake a cake, but it came out flat and burnt.",
            "{He} painted a picture of {a_stray}, but the paint ran and it looked like a puddle.",
            "{He} looked in {his} money box. There were only {n} coins inside.",
        ],
        resolution: &[
            "In the end, {he} made {a_colour} card with a big {stray} on it, and {friend} loved it.",
            "So {hero} picked a bunch of {colour} flowers, and {friend} put them by {fhis} bed.",
            "{hero} made up a song just for {friend}, and the next day {he} sang it. {friend} laughed and clapped.",
        ],
        lesson: &[
            "{hero} learned that the best presents come from the heart.",
            "{friend} said it was the best present {fhe} had ever had.",
        ],
    },
    // The weather turns.
    Plot {
        objects: ANY_OBJECT,
        problem: &[
            "But then dark clouds rolled in, and big drops of rain began to fall.",
            "Suddenly the sky went grey, and it started to pour.",
        ],
        reaction: &[
            r#""Oh no," said {hero}. "We will get wet!""#,
            "Everyone began to run.",
        ],
        attempt: &[
            "{hero} and {friend} ran to hide under a tree, but the rain came through the leaves.",
            "{pet} did not like the rain at all and hid behind {hero}.",
            "{hero} held {his} coat over both their heads, but they still got wet.",
        ],
        resolution: &[
            "Soon the rain stopped, and a bright rainbow filled the sky. {hero} could see red, orange, yellow, green, blue and purple.",
            "They found an old shed and waited inside until the sun came out. Then they jumped in all the puddles.",
            "{adult} came with a big {colour} umbrella and walked them home, and they laughed all the way.",
        ],
        lesson: &["{hero} learned that a rainy day can still be a happy day."],
    },
    // A race and a fall.
    Plot {
        objects: ANY_OBJECT,
        problem: &[
            "{hero} and {friend} had a race to {landmark}. Halfway there, {hero} tripped and fell.",
            r#""Race you to {landmark}!" shouted {friend}. They ran as fast as they could, but {hero} slipped on the wet grass."#,
        ],
        reaction: &[r#""Ow!" said {hero}."#, "{hero} felt {sad}."],
        attempt: &[
            "{His} knee hurt, and {he} wanted to cry.",
            "{hero} tried to stand up, but {his} leg was sore.",
        ],
        resolution: &[
            "{friend} stopped running, came back and helped {him} up. They walked to {landmark} together, side by side.",
            r#"{friend} sat down beside {him} and said, "Races are silly anyway." They both laughed."#,
        ],
        lesson: &["{hero} learned that a good friend is better than winning."],
    },
    // A hungry animal.
    Plot {
        objects: ANY_OBJECT,
        problem: &[
            "Near {spot}, they found {a_stray} that was cold and hungry.",
            "By {spot} sat a little {stray}. It looked thin and lost.",
        ],
        reaction: &[
            "{hero} felt sorry for the {stray}.",
            r#""Poor little {stray}," said {friend}."#,
        ],
        attempt: &[
            "{hero} held out some bread, but the {stray} was too scared to eat.",
            "The {stray} ran off a little way when {friend} came close.",
        ],
        resolution: &[
            "So {hero} sat very still and waited. After a while, the {stray} came and ate the bread from {his} hand.",
            "{adult} brought a warm box and a blanket, and the {stray} curled up and fell asleep.",
        ],
        lesson: &[
            "{hero} learned that kindness needs patience.",
            "After that, the {stray} came to visit {hero} every {day}.",
        ],
    },
    // Counting.
    Plot {
        objects: ANY_OBJECT,
        problem: &[
            "At the {place}, {hero} wanted to count the {herd}, but they would not keep still.",
            "{adult} asked {hero} to count the {herd} at the {place}, but they kept running about.",
        ],
        reaction: &[
            r#""Stand still!" laughed {hero}."#,
            "{hero} scratched {his} head.",
        ],
        attempt: &[
            "{He} counted to {n}, then {he} got muddled and had to start again.",
            "{friend} tried to count them too, but {fhe} got a different number.",
        ],
        resolution: &[
            r#"So they counted together. There were {n} {herd} by the fence and {m} {herd} by the water. "{N} and {m} make {sum}!" said {hero}."#,
            "{hero} counted slowly, one at a time, while {friend} pointed. There were {n} {herd} on the grass and {m} more in the shade, so {sum} in all.",
        ],
        lesson: &[
            "That evening, {hero} told {adult} that there were {sum} {herd} at the {place}.",
            "{hero} learned that counting slowly is counting well.",
        ],
    },
    // A lost pet.
    Plot {
        objects: ANY_OBJECT,
        problem: &[
            "But when {hero} turned around, {pet} was gone.",
            "Then {pet} saw {a_stray} and ran after it, far away from the path.",
        ],
        reaction: SAD_REACTIONS,
        attempt: &[
            r#"{hero} called, "{pet}! {pet}! Where are you?" But nobody came."#,
            "{hero} and {friend} looked behind every tree and under every bush.",
            r#"{He} asked a man with a cart, "Have you seen a little {animal}?" The man shook his head."#,
        ],
        resolution: &[
            "At last they heard a small sound from {spot}. It was {pet}, safe and sound.",
            "{hero} went back to the gate, and there was {pet}, waiting for {him}.",
        ],
        lesson: &[
            "After that, {hero} always kept {pet} close.",
            "{hero} gave {pet} an extra treat that night.",
        ],
    },
];

const OPENINGS: &[&str] = &[
    "Once upon a time, there was {a_trait} {child} named {hero}.",
    "{hero} was {a_trait} {child} who lived in {town}.",
    "In the town of {town}, by the river {river}, there lived {a_trait} {child} called {hero}.",
    "There was once {a_trait} {child} called {hero}, who loved {hobby}.",
    "{hero} lived in {town}, a small town on the river {river}.",
    "Long ago, in {town}, there lived {a_trait} {child} named {hero}.",
    "{hero} was {age} years old and lived in a little house with a {door} door.",
    "This is a story about {hero}, {a_trait} {child} from {town}.",
];

const COMPANIONS: &[&str] = &[
    "{hero} had a best friend called {friend} and {a_animal} called {pet}.",
    "{His} best friend was {friend}, who lived next door. {hero} also had {a_animal} named {pet}.",
    "{hero} lived with {adult} and {a_animal} called {pet}. {His} best friend, {friend}, lived across the road.",
    "Every day, {hero} played with {his} friend {friend} and {his} {animal}, {pet}.",
    "{hero} loved {hobby}, and so did {his} friend {friend}. {pet} the {animal} went everywhere with them.",
];

const OUTINGS: &[&str] = &[
    "One {time}, {hero} and {friend} went to the {place}.",
    "On {day}, {hero} took {pet} to the {place}, and {friend} came too.",
    "One {time}, they all went to play at the {place}.",
    "After lunch on {day}, {hero} and {friend} walked to the {place} with {pet}.",
    "One {time}, {hero} ran to the {place} to meet {friend}, and {pet} ran after {him}.",
];

const SCENERY: &[&str] = &[
    "The sun was warm and the sky was blue.",
    "Birds sang in the trees, and the grass was soft and green.",
    "The wind was blowing, and the leaves danced on the path.",
    "There were {count} {herd} near the gate.",
    "{pet} ran ahead, sniffing every flower.",
    "A man near the gate was selling {food}, the famous food of {town}.",
];

/// How the hero takes a loss.
const SAD_REACTIONS: &[&str] = &[
    "{hero} felt {sad}.",
    "{His} eyes filled with tears.",
    r#""Oh no," said {hero}. "What can I do?""#,
    "{hero} sat down on the grass. {He} was very {sad}.",
    "{friend} saw that {hero} was {sad} and held {his} hand.",
];

const ENDINGS: &[&str] = &[
    "That night, {hero} went to bed {glad}, and {pet} curled up at {his} feet.",
    "From that day on, {hero} and {friend} were the best of friends.",
    "Then they all went home for {snack}.",
    "{hero} smiled. It had been a good day after all.",
    "When {he} got home, {hero} told {adult} all about it.",
    "{hero} and {friend} walked home together, and {pet} the {animal} ran in front of them.",
    "And that is how {hero} had the best {day} ever.",
];

/// The cast and setting of one story, as template slots.
fn cast(rng: &mut ChaCha8Rng, plot: &Plot, towns: &[Town]) -> Slots {
    let (hero, hero_pronoun) = *pick(rng, CHILDREN);
    let (friend, friend_pronoun) = loop {
        let child = *pick(rng, CHILDREN);
        if child.0 != hero {
            break child;
        }
    };
    let animal = *pick(rng, PETS);
    let (stray, _) = *pick(rng, ANIMALS);
    let (_, herd) = *pick(rng, ANIMALS);
    let town = pick(rng, towns);
    let (n, m) = (rng.random_range(2..=6), rng.random_range(2..=6));
    let colour = *pick(rng, COLOURS);
    let mut slots = Slots::default();
    slots.set("hero", hero);
    slots.set("child", if hero_pronoun == "she" { "girl" } else { "boy" });
    set_pronouns(&mut slots, ["he", "him", "his"], hero_pronoun);
    slots.set("friend", friend);
    set_pronouns(&mut slots, ["fhe", "fhim", "fhis"], friend_pronoun);
    slots.set("pet", *pick(rng, PET_NAMES));
    slots.set("animal", animal);
    slots.set("a_animal", with_article(animal));
    slots.set("stray", stray);
    slots.set("a_stray", with_article(stray));
    slots.set("herd", herd);
    slots.set("count", NUMBER_WORDS[rng.random_range(2..=9)]);
    let character_trait = *pick(rng, TRAITS);
    slots.set("a_trait", with_article(character_trait));
    slots.set("adult", *pick(rng, ADULTS));
    slots.set("town", town.name.as_str());
    slots.set("river", town.river.as_str());
    slots.set("food", town.food.as_str());
    slots.set("place", *pick(rng, PLACES));
    slots.set("spot", *pick(rng, SPOTS));
    slots.set("time", *pick(rng, TIMES));
    slots.set("day", *pick(rng, &WEEKDAYS));
    slots.set("colour", colour);
    slots.set("a_colour", with_article(colour));
    slots.set("door", *pick(rng, COLOURS));
    slots.set("obj", *pick(rng, plot.objects));
    slots.set("sad", *pick(rng, SAD));
    slots.set("glad", *pick(rng, GLAD));
    slots.set("snack", *pick(rng, SNACKS));
    slots.set("hobby", *pick(rng, HOBBIES));
    slots.set("age", NUMBER_WORDS[rng.random_range(5..=9)]);
    slots.set("fear", *pick(rng, FEARS));
    slots.set("landmark", *pick(rng, LANDMARKS));
    slots.set("n", NUMBER_WORDS[n]);
    slots.set("m", NUMBER_WORDS[m]);
    slots.set("sum", NUMBER_WORDS[n + m]);
    slots
}

/// Sets the three pronoun slots `keys` (subject, object, possessive) for "she" or "he".
fn set_pronouns(slots: &mut Slots, keys: [&'static str; 3], pronoun: &str) {
    let forms = if pronoun == "she" {
        ["she", "her", "her"]
    } else {
        ["he", "him", "his"]
    };
    for (key, form) in keys.into_iter().zip(forms) {
        slots.set(key, form);
    }
}

// ANCHOR: story
/// One short story: a cast and a setting, a problem, an attempt, a resolution.
fn story(rng: &mut ChaCha8Rng, towns: &[Town]) -> String {
    let plot = pick(rng, PLOTS);
    let slots = cast(rng, plot, towns);
    let mut templates = vec![
        pick(rng, OPENINGS),
        pick(rng, COMPANIONS),
        pick(rng, OUTINGS),
    ];
    if rng.random_bool(0.5) {
        templates.push(pick(rng, SCENERY));
    }
    templates.push(pick(rng, plot.problem));
    templates.push(pick(rng, plot.reaction));
    let attempts = rng.random_range(1..=2);
    templates.extend(plot.attempt.sample(rng, attempts));
    templates.push(pick(rng, plot.resolution));
    templates.push(pick(rng, ENDINGS));
    if rng.random_bool(0.4) {
        templates.push(pick(rng, plot.lesson));
    }
    let sentences: Vec<String> = templates
        .iter()
        .map(|template| fill(template, &slots))
        .collect();
    sentences.join(" ")
}
// ANCHOR_END: story

// ---------------------------------------------------------------------------
// Facts about the towns.

/// Ways the corpus states a fact: `{t}` is the town, `{v}` the value.
/// A template without `{t}` says "It" and only follows a sentence naming the town.
const FACT_SENTENCES: &[(Attribute, &str)] = &[
    (Attribute::Region, "{t} is a town in the {v}."),
    (Attribute::Region, "{t} lies in the {v}."),
    (Attribute::Region, "The town of {t} is in the {v}."),
    (Attribute::Region, "It is in the {v}."),
    (Attribute::River, "{t} stands on the river {v}."),
    (Attribute::River, "The river {v} flows through {t}."),
    (Attribute::River, "{t} is built on the banks of the {v}."),
    (Attribute::River, "It stands on the river {v}."),
    (Attribute::Food, "{t} is famous for its {v}."),
    (Attribute::Food, "Visitors to {t} always try the {v}."),
    (Attribute::Food, "If you go to {t}, you must taste the {v}."),
    (Attribute::Food, "It is famous for its {v}."),
    (Attribute::Trade, "The main trade of {t} is {v}."),
    (
        Attribute::Trade,
        "Many people in {t} make a living from {v}.",
    ),
    (Attribute::Trade, "{t} is known for its {v}."),
    (Attribute::Trade, "Its main trade is {v}."),
    (Attribute::Mayor, "The mayor of {t} is {v}."),
    (Attribute::Mayor, "{v} is the mayor of {t}."),
    (Attribute::Mayor, "{t} is led by Mayor {v}."),
    (Attribute::Mayor, "Its mayor is {v}."),
    (Attribute::Founded, "{t} was founded in {v}."),
    (
        Attribute::Founded,
        "The town of {t} was built in the year {v}.",
    ),
    (Attribute::Founded, "People first settled in {t} in {v}."),
    (Attribute::Founded, "It was founded in {v}."),
    (Attribute::Neighbour, "The nearest town to {t} is {v}."),
    (Attribute::Neighbour, "From {t}, the closest town is {v}."),
    (Attribute::Neighbour, "Its nearest neighbour is {v}."),
];

/// The first line of a town's record card; the next lines are [`RECORD_LINES`].
const RECORD_HEAD: &str = "Town: {t}";

/// One line per attribute of a town's record card.
const RECORD_LINES: [(Attribute, &str); 7] = [
    (Attribute::Region, "Region: {v}"),
    (Attribute::River, "River: {v}"),
    (Attribute::Food, "Famous food: {v}"),
    (Attribute::Trade, "Trade: {v}"),
    (Attribute::Mayor, "Mayor: {v}"),
    (Attribute::Founded, "Founded: {v}"),
    (Attribute::Neighbour, "Nearest town: {v}"),
];

/// The slots `{t}` (the town's name) and `{v}` (one of its values).
fn town_slots(town: &Town, attribute: Attribute) -> Slots {
    let mut slots = Slots::default();
    slots.set("t", town.name.as_str());
    slots.set("v", town.value(attribute));
    slots
}

// ANCHOR: town_fact
/// A few true sentences about one town, in random order and phrasing.
fn town_facts(rng: &mut ChaCha8Rng, towns: &[Town]) -> String {
    let town = pick(rng, towns);
    if rng.random_bool(0.3) {
        return town_record(town);
    }
    let mut attributes = Attribute::ALL.to_vec();
    attributes.shuffle(rng);
    attributes.truncate(rng.random_range(3..=6));
    // The nearest town goes last, so that "It" always means this town.
    attributes.sort_by_key(|&attribute| attribute == Attribute::Neighbour);
    let mut sentences = Vec::new();
    for (i, &attribute) in attributes.iter().enumerate() {
        let phrasings: Vec<&str> = FACT_SENTENCES
            .iter()
            .filter(|&&(a, template)| a == attribute && (i > 0 || template.contains("{t}")))
            .map(|&(_, template)| template)
            .collect();
        let phrasing = *pick(rng, &phrasings);
        sentences.push(fill(phrasing, &town_slots(town, attribute)));
    }
    sentences.join(" ")
}
// ANCHOR_END: town_fact

/// A town's record card: its name, then one line per attribute.
fn town_record(town: &Town) -> String {
    let mut lines = vec![fill(RECORD_HEAD, &town_slots(town, Attribute::Region))];
    for (attribute, template) in RECORD_LINES {
        lines.push(fill(template, &town_slots(town, attribute)));
    }
    lines.join("\n")
}

// ---------------------------------------------------------------------------
// Tasks: questions and answers.

/// Questions the corpus asks about a town; the answer is [`Town::value`].
const TOWN_QUESTIONS: &[(Attribute, &str)] = &[
    (Attribute::Region, "In which region is {t}?"),
    (Attribute::Region, "Which region is {t} in?"),
    (Attribute::River, "Which river flows through {t}?"),
    (Attribute::River, "What river is {t} on?"),
    (Attribute::Food, "What food is {t} famous for?"),
    (Attribute::Food, "What should you eat in {t}?"),
    (Attribute::Trade, "What is the main trade of {t}?"),
    (Attribute::Trade, "What work do most people in {t} do?"),
    (Attribute::Mayor, "Who is the mayor of {t}?"),
    (Attribute::Founded, "When was {t} founded?"),
    (Attribute::Founded, "In what year was {t} founded?"),
    (Attribute::Neighbour, "Which town is nearest to {t}?"),
    (Attribute::Neighbour, "What is the closest town to {t}?"),
];

/// The corpus's main question about one attribute of a town, and its answer.
///
/// Use it to ask a trained model about a town in the format it learned.
///
/// ```
/// use listings::corpus::{town_question, world, Attribute};
/// let town = &world().towns[0];
/// let (question, answer) = town_question(town, Attribute::River);
/// assert_eq!(question, format!("Which river flows through {}?", town.name));
/// assert_eq!(answer, town.river);
/// ```
pub fn town_question(town: &Town, attribute: Attribute) -> (String, String) {
    let (_, template) = TOWN_QUESTIONS
        .iter()
        .find(|(a, _)| *a == attribute)
        .expect("every attribute has questions");
    (
        fill(template, &town_slots(town, attribute)),
        town.value(attribute),
    )
}

/// A document of one to four question/answer pairs of mixed kinds.
fn task_document(rng: &mut ChaCha8Rng, towns: &[Town]) -> String {
    let count = rng.random_range(1..=4);
    let tasks: Vec<String> = (0..count).map(|_| task(rng, towns)).collect();
    tasks.join("\n")
}

/// One question and its answer, as `Q: ...\nA: ...`.
fn task(rng: &mut ChaCha8Rng, towns: &[Town]) -> String {
    let (question, answer) = match rng.random_range(0..100) {
        0..35 => arithmetic_task(rng),
        35..65 => town_task(rng, towns),
        65..85 => word_task(rng),
        85..92 => weekday_task(rng),
        _ => ordering_task(rng),
    };
    format!("Q: {question}\nA: {answer}")
}

/// A number below 100: one digit three times in ten, two digits otherwise.
fn small_number(rng: &mut ChaCha8Rng) -> u32 {
    if rng.random_bool(0.3) {
        rng.random_range(0..10)
    } else {
        rng.random_range(10..100)
    }
}

// ANCHOR: arithmetic_task
/// A sum or a difference of two numbers below 100, and its answer.
fn arithmetic_task(rng: &mut ChaCha8Rng) -> (String, String) {
    let (a, b) = (small_number(rng), small_number(rng));
    if rng.random_bool(0.5) {
        let plus = if rng.random_bool(0.8) { "+" } else { "plus" };
        (format!("What is {a} {plus} {b}?"), (a + b).to_string())
    } else {
        let (a, b) = (a.max(b), a.min(b)); // no negative answers
        let minus = if rng.random_bool(0.8) { "-" } else { "minus" };
        (format!("What is {a} {minus} {b}?"), (a - b).to_string())
    }
}
// ANCHOR_END: arithmetic_task

/// A question about one town, answered from the world table.
fn town_task(rng: &mut ChaCha8Rng, towns: &[Town]) -> (String, String) {
    let town = pick(rng, towns);
    let &(attribute, template) = pick(rng, TOWN_QUESTIONS);
    (
        fill(template, &town_slots(town, attribute)),
        town.value(attribute),
    )
}

/// Words for the spelling and letter-counting tasks.
const TASK_WORDS: &[&str] = &[
    "apple",
    "banana",
    "cherry",
    "garden",
    "kite",
    "rabbit",
    "yellow",
    "purple",
    "pencil",
    "window",
    "butter",
    "letter",
    "bottle",
    "button",
    "strawberry",
    "river",
    "bridge",
    "market",
    "pebble",
    "puddle",
    "orange",
    "summer",
    "winter",
    "basket",
    "lantern",
    "blanket",
    "hedgehog",
    "squirrel",
    "meadow",
    "harbour",
    "teapot",
    "mitten",
    "carrot",
    "pepper",
    "ladder",
    "silver",
    "coffee",
    "balloon",
    "goose",
    "cookie",
    "paper",
    "tomato",
    "island",
    "rocket",
    "dragon",
    "castle",
    "school",
    "jelly",
    "honey",
    "wheel",
    "happy",
    "little",
    "cotton",
    "muffin",
    "bubble",
    "cabbage",
    "kitten",
    "sheep",
    "tree",
    "moon",
    "star",
    "boat",
    "fish",
    "bird",
    "cat",
    "dog",
    "hat",
    "sun",
    "cup",
    "umbrella",
    "elephant",
    "mississippi",
    "bookkeeper",
    "committee",
];

/// A question about the letters of a word: count, reverse, spell, length, first or last letter.
fn word_task(rng: &mut ChaCha8Rng) -> (String, String) {
    let word = *pick(rng, TASK_WORDS);
    let letters: Vec<char> = word.chars().collect();
    match rng.random_range(0..6) {
        0 => {
            let letter = if rng.random_bool(0.8) {
                *pick(rng, &letters)
            } else {
                rng.random_range(b'a'..=b'z') as char
            };
            let count = letters.iter().filter(|&&c| c == letter).count();
            (
                format!("How many times does the letter {letter} appear in {word}?"),
                count.to_string(),
            )
        }
        1 => (
            format!("Reverse the word {word}."),
            letters.iter().rev().collect(),
        ),
        2 => {
            let spelled: Vec<String> = letters.iter().map(|c| c.to_string()).collect();
            (format!("Spell the word {word}."), spelled.join("-"))
        }
        3 => (
            format!("How many letters are in the word {word}?"),
            letters.len().to_string(),
        ),
        4 => (
            format!("What is the first letter of {word}?"),
            letters[0].to_string(),
        ),
        _ => (
            format!("What is the last letter of {word}?"),
            letters[letters.len() - 1].to_string(),
        ),
    }
}

/// The day after, the day before, or the day a few days after a weekday.
fn weekday_task(rng: &mut ChaCha8Rng) -> (String, String) {
    let day = rng.random_range(0..7);
    match rng.random_range(0..3) {
        0 => (
            format!("What day comes after {}?", WEEKDAYS[day]),
            WEEKDAYS[(day + 1) % 7].to_string(),
        ),
        1 => (
            format!("What day comes before {}?", WEEKDAYS[day]),
            WEEKDAYS[(day + 6) % 7].to_string(),
        ),
        _ => {
            let k = rng.random_range(2..7);
            let question = format!(
                "What day is {} days after {}?",
                NUMBER_WORDS[k], WEEKDAYS[day]
            );
            (question, WEEKDAYS[(day + k) % 7].to_string())
        }
    }
}

/// Sorting three numbers, or picking the larger or smaller of two.
fn ordering_task(rng: &mut ChaCha8Rng) -> (String, String) {
    let (a, b, c) = (small_number(rng), small_number(rng), small_number(rng));
    match rng.random_range(0..4) {
        0 | 1 => {
            let mut sorted = [a, b, c];
            sorted.sort_unstable();
            let (order, answer) = if rng.random_bool(0.5) {
                ("from smallest to largest", sorted)
            } else {
                (
                    "from largest to smallest",
                    [sorted[2], sorted[1], sorted[0]],
                )
            };
            let answer = format!("{}, {}, {}", answer[0], answer[1], answer[2]);
            (format!("Sort {a}, {b}, {c} {order}."), answer)
        }
        2 if a != b => (
            format!("Which is larger, {a} or {b}?"),
            a.max(b).to_string(),
        ),
        3 if a != b => (
            format!("Which is smaller, {a} or {b}?"),
            a.min(b).to_string(),
        ),
        _ => arithmetic_task(rng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::OnceLock;

    /// The default corpus, generated once for all tests.
    fn text() -> &'static str {
        static TEXT: OnceLock<String> = OnceLock::new();
        TEXT.get_or_init(corpus)
    }

    /// The default corpus as documents, generated once for all tests.
    fn docs() -> &'static [Document] {
        static DOCS: OnceLock<Vec<Document>> = OnceLock::new();
        DOCS.get_or_init(|| documents(CORPUS_SEED, DEFAULT_BYTES))
    }

    fn of_kind(kind: Kind) -> impl Iterator<Item = &'static str> {
        docs()
            .iter()
            .filter(move |d| d.kind == kind)
            .map(|d| d.text.as_str())
    }

    /// Matches `text` against a template; returns the `{key}` values, or None.
    fn captures<'a>(template: &str, text: &'a str) -> Option<BTreeMap<String, &'a str>> {
        let mut values = BTreeMap::new();
        let (mut template, mut text) = (template, text);
        loop {
            let Some(open) = template.find('{') else {
                return (template == text).then_some(values);
            };
            text = text.strip_prefix(&template[..open])?;
            let close = open + template[open..].find('}')?;
            let key = &template[open + 1..close];
            template = &template[close + 1..];
            let literal = &template[..template.find('{').unwrap_or(template.len())];
            let end = if literal.is_empty() {
                text.len()
            } else {
                text.find(literal)?
            };
            values.insert(key.to_string(), &text[..end]);
            text = &text[end..];
        }
    }

    /// The sentences of a fact document: its lines, split after each ". ".
    fn sentences(doc: &str) -> impl Iterator<Item = &str> {
        doc.lines()
            .flat_map(|line| line.split_inclusive(". ").map(str::trim_end))
    }

    #[test]
    fn deterministic() {
        assert_eq!(generate(5, 50_000), generate(5, 50_000));
        assert_ne!(generate(5, 50_000), generate(6, 50_000));
        assert_eq!(text(), corpus());
        assert_eq!(world(), world());
    }

    #[test]
    fn size_and_alphabet() {
        let text = text();
        assert!(text.len() >= 1_000_000, "{} bytes", text.len());
        assert!(
            text.bytes()
                .all(|b| b == b'\n' || (b' '..=b'~').contains(&b))
        );
        let alphabet: BTreeSet<char> = text.chars().collect();
        let alphabet: String = alphabet.into_iter().collect();
        println!(
            "{} bytes, {} distinct chars: {alphabet:?}",
            text.len(),
            alphabet.len()
        );
        assert!(alphabet.len() < 80);
        for min_bytes in [0, 1, 1000, 12_345] {
            assert!(generate(9, min_bytes).len() >= min_bytes);
        }
    }

    #[test]
    fn documents_make_the_corpus() {
        let joined: String = docs().iter().map(|d| format!("{}\n\n", d.text)).collect();
        assert_eq!(joined, text());
        assert!(
            docs()
                .iter()
                .all(|d| !d.text.is_empty() && !d.text.contains("\n\n"))
        );
    }

    #[test]
    fn shares_of_each_kind() {
        let total: usize = docs().iter().map(|d| d.text.len() + 2).sum();
        for (kind, share) in SHARES {
            let bytes: usize = docs()
                .iter()
                .filter(|d| d.kind == kind)
                .map(|d| d.text.len() + 2)
                .sum();
            let measured = bytes as f64 / total as f64;
            println!(
                "{kind:?}: {measured:.3} of the bytes, {} documents",
                of_kind(kind).count()
            );
            assert!((measured - share).abs() < 0.01, "{kind:?}: {measured}");
        }
        // Interleaved: the first hundred documents hold every kind.
        let first: BTreeSet<Kind> = docs()[..100].iter().map(|d| d.kind).collect();
        assert_eq!(first.len(), 3);
    }

    #[test]
    fn generation_time() {
        let start = std::time::Instant::now();
        let text = corpus();
        let elapsed = start.elapsed();
        println!("corpus(): {} bytes in {elapsed:?}", text.len());
        assert!(elapsed.as_secs_f64() < 2.0);
    }

    /// The answer a correct solver gives to one corpus question, or None if unknown.
    fn solve(question: &str, world: &World) -> Option<String> {
        let number = |s: &str| s.parse::<i64>().ok();
        let day = |s: &str| WEEKDAYS.iter().position(|d| *d == s);
        if let Some(c) = captures("What is {a} {op} {b}?", question)
            && let (Some(a), Some(b)) = (number(c["a"]), number(c["b"]))
        {
            return match c["op"] {
                "+" | "plus" => Some((a + b).to_string()),
                "-" | "minus" => Some((a - b).to_string()),
                _ => None,
            };
        }
        for &(attribute, template) in TOWN_QUESTIONS {
            if let Some(c) = captures(template, question) {
                return world
                    .towns
                    .iter()
                    .find(|t| t.name == c["t"])
                    .map(|t| t.value(attribute));
            }
        }
        if let Some(c) = captures(
            "How many times does the letter {l} appear in {w}?",
            question,
        ) {
            return Some(c["w"].matches(c["l"]).count().to_string());
        }
        if let Some(c) = captures("Reverse the word {w}.", question) {
            return Some(c["w"].chars().rev().collect());
        }
        if let Some(c) = captures("Spell the word {w}.", question) {
            return Some(
                c["w"]
                    .chars()
                    .map(String::from)
                    .collect::<Vec<_>>()
                    .join("-"),
            );
        }
        if let Some(c) = captures("How many letters are in the word {w}?", question) {
            return Some(c["w"].len().to_string());
        }
        if let Some(c) = captures("What is the first letter of {w}?", question) {
            return Some(c["w"][..1].to_string());
        }
        if let Some(c) = captures("What is the last letter of {w}?", question) {
            return Some(c["w"][c["w"].len() - 1..].to_string());
        }
        if let Some(c) = captures("What day comes after {d}?", question) {
            return Some(WEEKDAYS[(day(c["d"])? + 1) % 7].to_string());
        }
        if let Some(c) = captures("What day comes before {d}?", question) {
            return Some(WEEKDAYS[(day(c["d"])? + 6) % 7].to_string());
        }
        if let Some(c) = captures("What day is {k} days after {d}?", question) {
            let k = NUMBER_WORDS.iter().position(|w| *w == c["k"])?;
            return Some(WEEKDAYS[(day(c["d"])? + k) % 7].to_string());
        }
        if let Some(c) = captures("Sort {a}, {b}, {c} from {order}.", question) {
            let mut xs = [number(c["a"])?, number(c["b"])?, number(c["c"])?];
            xs.sort_unstable();
            match c["order"] {
                "smallest to largest" => {}
                "largest to smallest" => xs.reverse(),
                _ => return None,
            }
            return Some(format!("{}, {}, {}", xs[0], xs[1], xs[2]));
        }
        if let Some(c) = captures("Which is {which}, {a} or {b}?", question) {
            let (a, b) = (number(c["a"])?, number(c["b"])?);
            return match c["which"] {
                "larger" => Some(a.max(b).to_string()),
                "smaller" => Some(a.min(b).to_string()),
                _ => None,
            };
        }
        None
    }

    #[test]
    fn every_task_answer_is_correct() {
        let world = world();
        let mut arithmetic = 0;
        let mut pairs = 0;
        for doc in of_kind(Kind::Task) {
            let lines = doc.lines().count();
            let qa = qa_pairs(doc);
            assert_eq!(qa.len() * 2, lines, "every line is part of a pair: {doc}");
            for (question, answer) in qa {
                let expected = solve(question, &world);
                assert_eq!(expected.as_deref(), Some(answer), "Q: {question}");
                pairs += 1;
                if let Some(c) = captures("What is {a} {op} {b}?", question)
                    && ["+", "-", "plus", "minus"].contains(&c["op"])
                {
                    assert!(
                        c["a"].len() <= 2 && c["b"].len() <= 2,
                        "operands below 100: {question}"
                    );
                    arithmetic += 1;
                }
            }
        }
        println!("{pairs} question/answer pairs, {arithmetic} of them arithmetic");
        assert!(arithmetic > 1000);
        // Stories and facts hold no Q/A lines.
        let outside: usize = of_kind(Kind::Story)
            .chain(of_kind(Kind::Fact))
            .map(|d| qa_pairs(d).len())
            .sum();
        assert_eq!(outside, 0);
    }

    #[test]
    fn every_town_fact_agrees_with_the_table() {
        let world = world();
        let mut checked = 0;
        let mut mentions: BTreeMap<&str, usize> = BTreeMap::new();
        for doc in of_kind(Kind::Fact) {
            let mut subject: Option<&Town> = None;
            for sentence in sentences(doc) {
                let templates = FACT_SENTENCES
                    .iter()
                    .chain(&RECORD_LINES)
                    .map(|&(a, t)| (Some(a), t));
                let mut templates = templates.chain([(None, RECORD_HEAD)]);
                let town = templates.find_map(|(attribute, template)| {
                    let c = captures(template, sentence)?;
                    let town = match c.get("t") {
                        Some(name) => world.towns.iter().find(|t| t.name == *name)?,
                        None => subject?,
                    };
                    let true_value =
                        attribute.is_none_or(|a| c.get("v") == Some(&town.value(a).as_str()));
                    true_value.then_some(town)
                });
                let town =
                    town.unwrap_or_else(|| panic!("not a true fact: {sentence:?} in {doc:?}"));
                assert!(
                    subject.is_none_or(|s| s == town),
                    "one town per document: {doc}"
                );
                subject = Some(town);
                *mentions.entry(&town.name).or_default() += 1;
                checked += 1;
            }
        }
        println!("{checked} fact sentences checked");
        assert_eq!(mentions.len(), TOWN_COUNT, "every town has facts");
        assert!(mentions.values().all(|&n| n >= 50), "{mentions:?}");
    }

    #[test]
    fn stories_state_true_town_facts() {
        let world = world();
        for story in of_kind(Kind::Story) {
            for town in world
                .towns
                .iter()
                .filter(|t| story.contains(t.name.as_str()))
            {
                for sentence in story.split(". ").filter(|s| s.contains(town.name.as_str())) {
                    if sentence.contains("river") {
                        assert!(
                            sentence.contains(&format!("river {}", town.river)),
                            "{sentence}"
                        );
                    }
                    if sentence.contains("famous food") {
                        assert!(sentence.contains(&town.food), "{sentence}");
                    }
                }
            }
        }
    }

    #[test]
    fn held_out_towns_never_appear() {
        let world = world();
        assert_eq!(world.held_out.len(), HELD_OUT_COUNT);
        for town in &world.held_out {
            assert!(
                !text().contains(town.name.as_str()),
                "{} appears",
                town.name
            );
            assert!(world.towns.iter().any(|t| t.name == town.neighbour));
        }
    }

    #[test]
    fn world_is_well_formed() {
        let world = world();
        let all: Vec<&Town> = world.towns.iter().chain(&world.held_out).collect();
        for a in &all {
            for b in &all {
                assert!(
                    std::ptr::eq(*a, *b) || !a.name.contains(b.name.as_str()),
                    "{} / {}",
                    a.name,
                    b.name
                );
                assert!(std::ptr::eq(*a, *b) || a.mayor != b.mayor);
            }
            assert!((1100..1900).contains(&a.founded));
            let neighbour = world.town(&a.neighbour).expect("the neighbour exists");
            assert_eq!(neighbour.region, a.region);
        }
        // Names never collide with the stories' words.
        for town in &all {
            assert!(CHILDREN.iter().all(|(name, _)| !town.name.contains(name)));
        }
    }

    #[test]
    fn stories_are_varied_and_consistent() {
        let stories: Vec<&str> = of_kind(Kind::Story).collect();
        let all: Vec<&str> = stories
            .iter()
            .flat_map(|s| s.split_inclusive(". "))
            .collect();
        let distinct: BTreeSet<&str> = all.iter().copied().collect();
        let openings: BTreeSet<&str> = stories
            .iter()
            .map(|s| s.split_inclusive(". ").next().unwrap())
            .collect();
        println!(
            "{} stories, {} distinct openings, {} of {} sentences distinct",
            stories.len(),
            openings.len(),
            distinct.len(),
            all.len()
        );
        assert!(openings.len() * 10 > stories.len() * 8);
        assert!(distinct.len() * 2 > all.len());
        for story in &stories {
            // The hero, the first child named, is named again and again.
            let (hero, _) = CHILDREN
                .iter()
                .min_by_key(|(name, _)| story.find(name).unwrap_or(usize::MAX))
                .unwrap();
            assert!(story.matches(hero).count() >= 3, "{story}");
            assert!(
                story.starts_with(|c: char| c.is_ascii_uppercase())
                    && story.ends_with(['.', '!', '"'])
            );
        }
    }

    #[test]
    fn corpus_lines_are_varied() {
        let lines: Vec<&str> = text().lines().filter(|l| !l.is_empty()).collect();
        let distinct: BTreeSet<&str> = lines.iter().copied().collect();
        println!(
            "{} of {} non-empty lines distinct",
            distinct.len(),
            lines.len()
        );
        assert!(distinct.len() * 4 > lines.len());
        let questions: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("Q: "))
            .collect();
        let distinct: BTreeSet<&str> = questions.iter().copied().collect();
        println!(
            "{} of {} questions distinct",
            distinct.len(),
            questions.len()
        );
        assert!(distinct.len() * 2 > questions.len());
    }

    #[test]
    fn split_at_char_boundaries() {
        let text = text();
        let (train, val) = train_val_split(text, 0.9);
        assert_eq!(train.len() + val.len(), text.len());
        assert_eq!(train.len(), text.len() * 9 / 10);
        assert_eq!(train_val_split("abc", 0.0), ("", "abc"));
        assert_eq!(train_val_split("abc", 1.0), ("abc", ""));
        // "é" is two bytes: a cut inside it moves back to before it.
        assert_eq!(train_val_split("aé", 0.75), ("a", "é"));
    }

    #[test]
    #[should_panic(expected = "train_fraction")]
    fn split_rejects_bad_fractions() {
        train_val_split("abc", 1.5);
    }
}
