CREATE TABLE authors (
  id INT PRIMARY KEY,
  name VARCHAR(120) NOT NULL,
  born_year INT,
  country VARCHAR(60)
);

CREATE TABLE books (
  id INT PRIMARY KEY,
  title VARCHAR(200) NOT NULL,
  author_id INT NOT NULL,
  published_year INT,
  isbn VARCHAR(17) UNIQUE,
  shelf VARCHAR(10),
  FOREIGN KEY (author_id) REFERENCES authors (id)
);

CREATE TABLE members (
  id INT PRIMARY KEY,
  full_name VARCHAR(120) NOT NULL,
  email VARCHAR(200) UNIQUE,
  joined DATE NOT NULL
);

CREATE TABLE loans (
  book_id INT NOT NULL,
  member_id INT NOT NULL,
  loaned_on DATE NOT NULL,
  due_on DATE NOT NULL,
  returned_on DATE,
  PRIMARY KEY (book_id, member_id, loaned_on),
  FOREIGN KEY (book_id) REFERENCES books (id),
  FOREIGN KEY (member_id) REFERENCES members (id)
);
