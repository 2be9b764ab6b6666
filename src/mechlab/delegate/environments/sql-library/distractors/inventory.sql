CREATE TABLE shelves (
  code VARCHAR(10) PRIMARY KEY,
  room VARCHAR(40) NOT NULL,
  capacity INT
);
